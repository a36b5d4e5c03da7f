"""A line chart drawn in braille cells: several series on one step axis.

Each terminal cell holds a 2x4 grid of braille dots, so a 60x8 chart has a
120x32 dot canvas: enough to read a loss curve's shape over SSH. Series are
overlaid in their own colours with a legend; the y axis shows the range.
Pure text rendering (no plotting library), cheap enough to redraw every
second while a run trains. Labels and the title are run names and metric names
from the store: segments reach the terminal as they are, so their control
characters are escaped here (tui.safe_text).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from tui.safe_text import printable

DOT_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
"""Braille dot bit for (row 0..3, column 0..1) within a cell."""
COLOURS = ("cyan", "magenta", "yellow", "green", "red", "blue", "bright_white")


@dataclass(frozen=True)
class Series:
    label: str
    steps: list[int]
    values: list[float]


Run = tuple[str, str]
"""A stretch of one row drawn in one style (a Rich style name, "" for none)."""


def plot_rows(series: list[Series], width: int, height: int, *, log_y: bool = False
              ) -> list[list[Run]]:
    """The chart, `width` x `height` cells including the axis and legend, as rows of
    styled runs (neighbouring cells of one style merged into one run)."""
    points = [(s, [(x, y) for x, y in zip(s.steps, s.values, strict=True)
                   if math.isfinite(y) and (y > 0 or not log_y)]) for s in series]
    points = [(s, p) for s, p in points if p]
    if not points:
        return [[("no data yet", "dim")]]
    if width < 12 or height < 3:
        return [[("too small", "dim")]]
    ys = [_y(y, log_y) for _, p in points for _, y in p]
    xs = [x for _, p in points for x, _ in p]
    lo, hi = min(ys), max(ys)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    x0, x1 = min(xs), max(xs)
    label_w = max(len(_num(_inv(hi, log_y))), len(_num(_inv(lo, log_y))))
    cols, rows = width - label_w - 1, height - (1 if len(points) > 1 else 0) - 1
    if cols < 4 or rows < 1:
        return [[("too small", "dim")]]
    dots_w, dots_h = cols * 2, rows * 4
    cells: list[list[int]] = [[0] * cols for _ in range(rows)]
    owner: list[list[int]] = [[-1] * cols for _ in range(rows)]
    for index, (_, pts) in enumerate(points):
        previous = None
        for x, y in pts:
            dx = 0 if x1 == x0 else round((x - x0) / (x1 - x0) * (dots_w - 1))
            dy = round((hi - _y(y, log_y)) / (hi - lo) * (dots_h - 1))
            for px, py in _segment(previous, (dx, dy)):
                row, col = py // 4, px // 2
                cells[row][col] |= DOT_BITS[py % 4][px % 2]
                owner[row][col] = index
            previous = (dx, dy)
    out: list[list[Run]] = []
    for r in range(rows):
        label = _num(_inv(hi, log_y)) if r == 0 else (
            _num(_inv(lo, log_y)) if r == rows - 1 else "")
        line: list[Run] = [(label.rjust(label_w) + "┤" if label else " " * label_w + "│", "dim")]
        text, style = [], ""
        for c in range(cols):
            bits = cells[r][c]
            cell_style = COLOURS[owner[r][c] % len(COLOURS)] if bits else ""
            if cell_style != style and text:
                line.append(("".join(text), style))
                text = []
            style = cell_style
            text.append(chr(0x2800 + bits) if bits else " ")
        line.append(("".join(text), style))
        out.append(line)
    out.append([(" " * label_w + "└" + f"step {x0}".ljust(cols - len(f"{x1}")) + f"{x1}", "dim")])
    if len(points) > 1:
        legend: list[Run] = []
        for index, (s, _) in enumerate(points):
            legend += [("━ ", COLOURS[index % len(COLOURS)]),
                       (printable(s.label, limit=24) + "  ", "")]
        out.append(legend)
    return out


def _segment(a: tuple[int, int] | None, b: tuple[int, int]) -> list[tuple[int, int]]:
    """Dots of a straight line from a to b (b alone when there is no a)."""
    if a is None:
        return [b]
    (x0, y0), (x1, y1) = a, b
    n = max(abs(x1 - x0), abs(y1 - y0), 1)
    return [(x0 + round((x1 - x0) * i / n), y0 + round((y1 - y0) * i / n)) for i in range(n + 1)]


def _y(value: float, log_y: bool) -> float:
    return math.log10(value) if log_y else value


def _inv(value: float, log_y: bool) -> float:
    return 10 ** value if log_y else value


def _num(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.1e}"
    return f"{value:.3g}"


class LineChart(Widget):
    """A widget around `plot_rows`; set `series` to redraw.

    Drawn through the line API from strips cached until the series, title,
    size or style change: a chart redrawn on every poll of a training run
    would otherwise go through Textual's general text layout each time, which
    was most of what a watching TUI cost the machine.
    """

    DEFAULT_CSS = """
    LineChart { height: 8; }
    """

    def __init__(self, title: str = "", *, log_y: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.log_y = log_y
        self._series: list[Series] = []
        self._strips: list[Strip] = []
        self._strips_key: tuple | None = None

    @property
    def series(self) -> list[Series]:
        return self._series

    @series.setter
    def series(self, value: list[Series]) -> None:
        self._series = value
        self.refresh()

    def render_lines(self, crop: Region) -> list[Strip]:
        width, height = self.content_size
        base = self.rich_style
        key = (width, height, self.title, self.log_y, id(self._series), base)
        if key != self._strips_key:
            self._strips, self._strips_key = self._draw(width, height, base), key
        return super().render_lines(crop)

    def _draw(self, width: int, height: int, base: Style) -> list[Strip]:
        styles: dict[str, Style] = {}

        def style(name: str) -> Style:
            if name not in styles:
                styles[name] = base + Style.parse(name) if name else base
            return styles[name]

        rows = plot_rows(self._series, width, height - (1 if self.title else 0),
                         log_y=self.log_y)
        if self.title:
            rows.insert(0, [(printable(self.title), "bold")])
        return [Strip([Segment(text, style(name)) for text, name in row])
                .adjust_cell_length(width, base) for row in rows]

    def render_line(self, y: int) -> Strip:
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(self.content_size.width, self.rich_style)
