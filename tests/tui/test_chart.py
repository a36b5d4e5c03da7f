"""The braille line chart: what it draws, and that the widget redraws only on change."""

from __future__ import annotations

import math

from textual.app import App, ComposeResult

from tui.widgets.chart import DOT_BITS, LineChart, Series, plot_rows


def text(row) -> str:
    return "".join(run for run, _ in row)


def test_every_row_fills_the_width_and_runs_are_merged():
    series = [Series("loss", list(range(100)), [math.exp(-i / 20) for i in range(100)])]
    rows = plot_rows(series, 40, 8)
    assert len(rows) == 8  # 7 plot rows + the step axis; one series has no legend
    for row in rows[:-1]:
        assert len(text(row)) == 40
        styles = [style for _, style in row]
        assert all(a != b for a, b in zip(styles[1:], styles[2:], strict=False)), \
            "neighbouring runs share a style: they should have been merged"
    assert text(rows[-1]).rstrip().endswith("99")
    assert "step 0" in text(rows[-1])


def test_a_falling_curve_starts_top_left_and_ends_bottom_right():
    series = [Series("loss", [1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0])]
    rows = plot_rows(series, 20, 5)
    top, bottom = text(rows[0]), text(rows[3])
    assert top.startswith("4┤")
    assert bottom.startswith("1┤")
    first_cell = top[2]
    assert ord(first_cell) - 0x2800 & DOT_BITS[0][0], "first point is the top-left dot"
    last_cell = bottom.rstrip()[-1]
    assert ord(last_cell) - 0x2800 & DOT_BITS[3][1], "last point is the bottom-right dot"


def test_overlaid_series_get_their_own_colours_and_a_legend():
    a = Series("run 1", [0, 10], [1.0, 2.0])
    b = Series("run 2", [0, 10], [2.0, 1.0])
    rows = plot_rows([a, b], 30, 6)
    legend = rows[-1]
    assert text(legend).split() == ["━", "run", "1", "━", "run", "2"]
    colours = {style for row in rows[:-2] for _, style in row[1:] if style}
    assert len(colours) == 2


def test_empty_log_scale_and_tiny_charts_say_so():
    assert text(plot_rows([], 40, 8)[0]) == "no data yet"
    # Non-positive values cannot go on a log scale; nothing is left to draw.
    assert text(plot_rows([Series("x", [1, 2], [0.0, -1.0])], 40, 8, log_y=True)[0]) \
        == "no data yet"
    assert text(plot_rows([Series("x", [1, 2], [1.0, 2.0])], 11, 3)[0]) == "too small"
    wide_labels = Series("x", [1, 2], [-0.00123, -0.00456])  # "-1.2e-03": 8 of 12 cells
    assert text(plot_rows([wide_labels], 12, 3)[0]) == "too small"
    nan = Series("x", [1, 2, 3], [float("nan"), 1.0, 2.0])
    assert len(plot_rows([nan], 30, 5)) == 5


class ChartApp(App[None]):
    def compose(self) -> ComposeResult:
        yield LineChart("training loss", id="chart")


async def test_the_widget_draws_its_title_and_redraws_only_on_change():
    app = ChartApp()
    async with app.run_test(size=(50, 12)) as pilot:
        chart = app.query_one(LineChart)
        chart.series = [Series("loss", [1, 2, 3], [3.0, 2.0, 1.0])]
        await pilot.pause()
        lines = [strip.text for strip in chart.render_lines(chart.content_region.reset_offset)]
        assert lines[0].startswith("training loss")
        assert lines[1].startswith("3┤")
        assert all(strip.cell_length == chart.content_size.width
                   for strip in chart.render_lines(chart.content_region.reset_offset))
        drawn = chart._strips
        chart.render_lines(chart.content_region.reset_offset)
        assert chart._strips is drawn, "same series, same size: the cached strips are reused"
        chart.series = [Series("loss", [1, 2, 3], [1.0, 2.0, 3.0])]
        await pilot.pause()
        assert chart._strips is not drawn
        assert [s.text for s in chart._strips][1].startswith("3┤")
