"""Polish for the researcher over SSH (#22), at 120x40 and 80x24: the footer leads with
the essential keys and cuts no label, focus is marked in the accent colour, the runs
table keeps ID, status, name, best metric and duration at 80 columns, dialogs show
their whole sentence, Compare scrolls by page and shows where two runs disagree (#21),
and the queue's actions are in the command palette (#19). Real store, real app."""

from __future__ import annotations

import pytest
from textual.color import Color
from textual.command import CommandList
from textual.widgets import DataTable, Input

from tests.support.pilot_wait import settle, wait_for
from tests.support.seed import seed_queue, seed_runs
from tests.support.seed_review import seed_disagreeing_runs
from tui.app import make_app
from tui.widgets.footer import KeysFooter, visible_keys
from tui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.slow  # whole TUI sessions

SIZES = [(120, 40), (80, 24)]
LONG_NAME = "sentiment-baseline-with-frozen-embeddings-and-a-very-long-description"
ESSENTIALS = ["?", "1", "2", "3", "4", "q"]


def _long_named_run(store) -> int:
    run_id = store.create_run({"model": {"id": "x"}}, name=LONG_NAME,
                              model_id="sentence-transformers/all-MiniLM-L6-v2",
                              task="text-classification", dataset="/data/tweets-train.csv")
    store.finish(run_id, "completed", summary={"best_accuracy": 0.8125})
    return run_id


def _screen_name(app) -> str:
    return app.screen.__class__.__name__


@pytest.mark.parametrize("size", SIZES)
async def test_footer_table_and_delete_dialog_fit(store, size):
    seed_runs(store)
    run_id = _long_named_run(store)
    app = make_app(store=store)
    width = size[0]
    async with app.run_test(size=size) as pilot:
        table = app.screen.query_one(RunsTable)
        await wait_for(pilot, lambda: table.row_count == 4)
        # The footer: the essentials first, then whole labels only, left of the palette key.
        footer = app.screen.query_one(KeysFooter)
        await wait_for(pilot, lambda: visible_keys(footer)[:6] == ESSENTIALS)
        shown = [k for k in footer.children if k.display]
        palette = [k for k in shown if k.has_class("-command-palette")]
        assert palette and all(k.region.right <= palette[0].region.x
                               for k in shown if k not in palette)
        keys = visible_keys(footer)
        assert ("c" in keys and "x" in keys) if width >= 120 else len(keys) >= 8
        # The table: ID, status, name, best and duration at any width; the rest if room.
        await wait_for(pilot, lambda: table.layout_shown is not None
                       and table.layout_shown.widths.get("name", 0) >= 20)
        columns = table.layout_shown.columns
        assert {"id", "status", "name", "best", "duration"} <= set(columns)
        assert ("started" in columns) == (width >= 120)
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= width
        row = {key: str(table.get_cell(str(run_id), key)) for key in columns}
        assert row["status"] == "completed" and row["best"] == "acc 0.812"
        assert row["name"].endswith("…") and LONG_NAME.startswith(row["name"][:-1])
        # The delete question, whole, inside its box.
        table.move_cursor(row=table.get_row_index(str(run_id)))
        await pilot.press("x")
        await wait_for(pilot, lambda: _screen_name(app) == "ConfirmScreen")
        label = app.screen.query_one("#confirm-question")
        box = app.screen.query_one("#confirm-box")
        await wait_for(pilot, lambda: label.region.width > 0 and box.region.width > 0)
        await settle(pilot)  # laid out, and nothing left to lay out again
        said = "".join(line.text for line in label.render_lines(label.region.reset_offset))
        assert "".join(str(label.render()).split()) == "".join(said.split())
        assert said.split()[-1] == "files?" and box.region.contains_region(label.region)
        assert box.region.right <= width


@pytest.mark.parametrize("size", SIZES)
async def test_focus_is_marked_in_the_accent_colour(store, size):
    seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=size) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        accent = Color.parse(app.theme_variables["accent"])

        def header() -> Color:
            return table.get_component_styles("datatable--header").background

        focused_header = header()
        assert app.focused is table and focused_header.rgb != Color.parse(
            app.theme_variables["panel"]).rgb
        await pilot.press("slash")
        box = app.screen.query_one("#run-search", Input)
        await wait_for(pilot, lambda: app.focused is box)
        assert box.styles.border_top[1].rgb == accent.rgb  # Textual's own: $primary
        assert header().rgb != focused_header.rgb  # the table shows it lost focus
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.focused is table)
        assert header().rgb == focused_header.rgb


async def test_resume_of_a_completed_run_names_the_key(store):
    seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        table.move_cursor(row=2)  # the oldest: completed
        await pilot.press("R")
        await wait_for(pilot, lambda: any("press f to fork" in n.message
                                          for n in app._notifications))
        assert not any("hubtune" in n.message for n in app._notifications)


async def _open_compare(pilot, ids) -> None:
    app = pilot.app
    table = app.screen.query_one(RunsTable)
    await wait_for(pilot, lambda: all(table.holds(i) for i in ids))
    for run_id in ids:
        app.screen.select_run(run_id)
        await pilot.press("space")
    await pilot.press("c")
    await wait_for(pilot, lambda: _screen_name(app) == "CompareScreen")


async def test_compare_scrolls_by_page_to_the_validation_chart(store):
    ids = seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_compare(pilot, [ids[0], ids[2]])
        page = app.screen.query_one("#compare-overview")
        chart = app.screen.query_one("#compare-val")
        await wait_for(pilot, lambda: page.max_scroll_y > 0)
        assert not page.region.contains_region(chart.region)  # below the fold at first
        await pilot.press("end")
        await wait_for(pilot, lambda: page.scroll_y == page.max_scroll_y)
        assert page.region.contains_region(chart.region)
        await pilot.press("home")
        await wait_for(pilot, lambda: page.scroll_y == 0)
        await pilot.press("pagedown")
        await wait_for(pilot, lambda: page.scroll_y > 0)
        await pilot.press("pageup")
        await wait_for(pilot, lambda: page.scroll_y == 0)


@pytest.mark.parametrize("size", SIZES)
async def test_compare_shows_where_two_runs_disagree(store, tmp_path, size):
    first, second, expected = seed_disagreeing_runs(store, tmp_path)
    app = make_app(store=store)
    async with app.run_test(size=size) as pilot:
        await _open_compare(pilot, [first, second])
        await pilot.press("e")
        examples = app.screen.query_one("#examples-table", DataTable)
        await wait_for(pilot, lambda: examples.row_count == len(expected), timeout=30)
        summary = str(app.screen.query_one("#examples-summary").render())
        wins = {side: sum(v == side for v in expected.values()) for side in ("first", "second")}
        assert (f"disagree on {len(expected)} of 10 validation examples: run {first} is right "
                f"on {wins['first']}, run {second} on {wins['second']}") in " ".join(
                    summary.split())
        who = {"first": f"#{first}", "second": f"#{second}", "neither": "neither"}
        for example, side in expected.items():
            cells = [str(c) for c in examples.get_row(str(example))]
            assert cells[5] == who[side] and cells[3] != cells[4]
            assert cells[2] == (cells[3] if side == "first" else cells[4])
        assert examples.virtual_size.width <= examples.size.width  # no column cut off
        assert app.focused is examples
        text = str(app.screen.query_one("#example-input").render())
        assert f"Example {min(expected)} (row " in text
        await pilot.press("e")  # back to the overview
        await wait_for(pilot, lambda: app.focused is app.screen.query_one("#compare-overview"))


async def test_examples_of_a_run_without_results_say_why(store, tmp_path):
    first, _, _ = seed_disagreeing_runs(store, tmp_path)
    unevaluated = store.create_run(store.get_run(first).config, name="never-evaluated")
    broken = _long_named_run(store)  # its config names no data
    app = make_app(store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await _open_compare(pilot, [first, unevaluated])
        await pilot.press("e")
        summary = app.screen.query_one("#examples-summary")
        await wait_for(pilot, lambda: f"Run {unevaluated} has no per-example results"
                       in " ".join(str(summary.render()).split()), timeout=30)
        assert app.screen.query_one("#examples-table", DataTable).row_count == 0
        await pilot.press("escape")
        await wait_for(pilot, lambda: _screen_name(app) == "RunsScreen")
        app.screen.marked.clear()
        await _open_compare(pilot, [first, broken])
        await pilot.press("e")
        summary = app.screen.query_one("#examples-summary")
        await wait_for(pilot, lambda: f"Run {broken}'s config does not load: data.train"
                       in " ".join(str(summary.render()).split()), timeout=30)


async def test_queue_actions_are_in_the_command_palette(store):
    seed_queue(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 7)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Queue: move to the top", "Queue: move up", "Queue: move down",
                      "Queue: pause or resume", "Queue: remove the selected run",
                      "Sweep: compare its runs"):
            assert title in titles
        assert not store.queue_paused()
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: _screen_name(app) == "CommandPalette")
        await pilot.press(*"queue: pause")
        # The palette searches in a worker: enter before it lists the command does nothing.
        commands = app.screen.query_one(CommandList)

        def highlighted() -> str:
            i = commands.highlighted
            return "" if i is None else str(commands.get_option_at_index(i).prompt)

        await wait_for(pilot, lambda: "Queue: pause or resume" in highlighted())
        await settle(pilot)
        assert "Queue: pause or resume" in highlighted()
        await pilot.press("enter")
        await wait_for(pilot, lambda: store.queue_paused())
        await wait_for(pilot, lambda: "queue paused" in app.screen.sub_title)
