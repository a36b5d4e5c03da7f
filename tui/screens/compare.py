"""Two or more runs side by side: the config keys that differ, metrics, and loss curves."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from engine.core.config import lower_is_better
from store import Comparison, RunStore
from tui.formatting import cell, cut, literal
from tui.widgets.chart import LineChart, Series


class CompareScreen(ModalScreen[None]):
    """Built from a `Comparison` read on open; Esc closes it."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, store: RunStore, run_ids: list[int], *, title: str | None = None,
                 best: int | None = None) -> None:
        super().__init__()
        self.store = store
        self.run_ids = run_ids
        """The runs, one column each, in this order."""
        self.title_text = title
        """What is compared (a sweep); None: the runs marked."""
        self.best = best
        """A run whose column is starred: a sweep's best."""

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-box"):
            yield Static("", id="compare-title")
            yield DataTable(id="compare-table", zebra_stripes=True, cursor_type="row")
            with VerticalScroll(id="compare-curves"):
                yield LineChart("training loss", id="compare-loss", classes="compare-curve")
                yield LineChart("validation", id="compare-val", classes="compare-curve")

    def on_mount(self) -> None:
        cmp: Comparison = self.store.compare(self.run_ids)
        what = literal(self.title_text or f"Comparing {len(cmp.runs)} runs", 200)
        self.query_one("#compare-title", Static).update(
            f"[b]{what}[/b]: {len(cmp.config_diff)} config keys differ (Esc closes)")
        table = self.query_one("#compare-table", DataTable)
        table.add_column("", key="key")
        for r in cmp.runs:
            star = "★ " if r.id == self.best else ""
            table.add_column(cell(star + cut(f"#{r.id} {r.name}", 24)), key=str(r.id))
        # Every cell is a Text: keys and values come from stored configs and summaries,
        # and a str cell would be parsed as markup.
        table.add_row(cell("status", "b"), *[cell(r.status) for r in cmp.runs])
        for key, values in cmp.config_diff.items():
            table.add_row(cell(cut(key, 40), "yellow"), *[cell(cut(_fmt(v), 40)) for v in values])
        for key, values in cmp.metrics.items():
            if all(v is None or isinstance(v, (int, float)) for v in values):
                best = _best(key, values)
                table.add_row(cell(cut(key, 40)), *[
                    cell(_fmt(v), "b green" if v is not None and v == best else "")
                    for v in values])
        # Curves overlaid on one step axis, one colour per run.
        loss = [Series(f"#{r.id} {r.name}", *_xy(self.store.series(r.id, "loss")))
                for r in cmp.runs]
        self.query_one("#compare-loss", LineChart).series = loss
        watched = next((v for v in (r.summary.get("watched_metric") for r in cmp.runs) if v),
                       "accuracy")
        val = [Series(f"#{r.id} {r.name}", *_xy(self.store.series(r.id, f"val_{watched}")))
               for r in cmp.runs]
        chart = self.query_one("#compare-val", LineChart)
        chart.title = f"validation {watched}"
        chart.series = val


def _xy(series) -> tuple[list[int], list[float]]:
    return list(series.steps), list(series.values)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _best(key: str, values) -> float | None:
    nums = [v for v in values if isinstance(v, (int, float))]
    if not nums or key in ("steps", "epochs", "best_step"):
        return None
    return min(nums) if lower_is_better(key) else max(nums)
