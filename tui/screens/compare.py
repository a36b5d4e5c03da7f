"""Two or more runs side by side: the config keys that differ, metrics, and loss curves;
for two runs on the same data, the validation examples where they disagree (e).

The overview scrolls as one page (PageUp/PageDown/Home/End, arrows), so the validation
chart below the table is reached without Tab. The examples are read once, on the app's
engine thread (tui.widgets.examples_view), the first time they are asked for.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import ContentSwitcher, DataTable, Static

from engine.core.config import lower_is_better
from store import Comparison, RunStore
from store import Series as StoredSeries
from tui.formatting import cell, cut, literal, metric
from tui.messages import ExamplesCompared, ImportancesFound
from tui.remote_reads import MixedRead, compare_label
from tui.widgets.chart import LineChart, Series
from tui.widgets.examples_view import ExamplesView, read_disagreements
from tui.widgets.footer import KeysFooter
from tui.widgets.runs_table import run_key

KEY_CHARS = 32
"""The config key column at most (`train.early_stopping.patience` fits)."""
MIN_VALUE_CHARS = 8
"""A run's column at least; with many runs the table scrolls sideways instead."""
RESULT_ROW = "result (kept model)"
"""The row of each run's result (tui.run_result), under its status."""


class CompareScreen(ModalScreen[None]):
    """Built from a `Comparison` read on open; Esc closes it."""

    BINDINGS = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("e", "toggle_examples", "Examples"),
        Binding("pagedown", "scroll('page_down')", "Scroll", show=False),
        Binding("pageup", "scroll('page_up')", "Scroll up", show=False),
        Binding("home", "scroll('scroll_home')", "Top", show=False),
        Binding("end", "scroll('scroll_end')", "Bottom", show=False),
    ]

    def __init__(self, store: RunStore, run_ids: list[int], *, title: str | None = None,
                 best: int | None = None, sweep_id: str | None = None,
                 read: MixedRead | None = None) -> None:
        super().__init__()
        self.store = store
        self.run_ids = run_ids
        """The runs, one column each, in this order."""
        self.title_text = title
        """What is compared (a sweep); None: the runs marked."""
        self.best = best
        """A run whose column is starred: a sweep's best."""
        self.sweep_id = sweep_id
        """The sweep compared: a search's parameter importances are shown under the title."""
        self._examples_asked = False
        """Whether the examples have been asked of the engine thread (they are read once)."""
        self.read = read
        """Runs of several machines, read already (tui/remote_reads.py); None: this
        machine's `run_ids`, read from the store on open."""

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-box"):
            yield Static("", id="compare-title")
            yield Static("", id="compare-importance", classes="-hidden")
            with ContentSwitcher(initial="compare-overview", id="compare-views"):
                with VerticalScroll(id="compare-overview"):
                    yield DataTable(id="compare-table", zebra_stripes=True, cursor_type="none")
                    yield LineChart("training loss", id="compare-loss", classes="compare-curve")
                    yield LineChart("validation", id="compare-val", classes="compare-curve")
                yield ExamplesView(id="compare-examples")
        yield KeysFooter()

    def on_mount(self) -> None:
        cmp: Comparison = self.read.comparison if self.read else self.store.compare(self.run_ids)
        what = literal(self.title_text or f"Comparing {len(cmp.runs)} runs", 200)
        self.query_one("#compare-title", Static).update(
            f"[b]{what}[/b]: {len(cmp.config_diff)} config keys differ")
        self._fill_table(cmp)
        if self.sweep_id is not None:
            sweep_id = self.sweep_id
            self.app.engine.submit(lambda: _importances(sweep_id), to=self)
        # Curves overlaid on one step axis, one colour per run.
        loss = [Series(compare_label(r), *_xy(self._series(r, "loss"))) for r in cmp.runs]
        self.query_one("#compare-loss", LineChart).series = loss
        watched = self.read.watched if self.read else next(
            (v for v in (r.summary.get("watched_metric") for r in cmp.runs) if v), "accuracy")
        val = [Series(compare_label(r), *_xy(self._series(r, f"val_{watched}")))
               for r in cmp.runs]
        chart = self.query_one("#compare-val", LineChart)
        chart.title = f"validation {watched}"
        chart.series = val
        self.query_one("#compare-overview").focus()

    def _series(self, run, name: str):
        """A run's curve: read already for runs of several machines, else from the store."""
        if self.read is not None:
            return self.read.series.get((run_key(run), name)) or StoredSeries(name, [], [])
        return self.store.series(run.id, name)

    def _fill_table(self, cmp: Comparison) -> None:
        """Config keys that differ and final metrics, one column per run, cut to fit the
        box (80 columns included) rather than scroll sideways."""
        table = self.query_one("#compare-table", DataTable)
        table.can_focus = False  # the page scrolls as one: its keys are the page's
        keys = ["status", RESULT_ROW, *cmp.config_diff, *cmp.metrics]
        key_w = min(KEY_CHARS, max(len(k) for k in keys))
        inner = int(self.app.size.width * 0.95) - 6  # the box's border, padding, scrollbar
        value_w = max(MIN_VALUE_CHARS, (inner - key_w - 2) // max(len(cmp.runs), 1) - 2)
        table.add_column("", key="key")
        for r in cmp.runs:
            star = "★ " if r.id == self.best else ""
            table.add_column(cell(star + cut(compare_label(r), value_w)), key=run_key(r))
        # Every cell is a Text: keys and values come from stored configs and summaries,
        # and a str cell would be parsed as markup.
        table.add_row(cell("status", "b"), *[cell(cut(_status(r), value_w)) for r in cmp.runs])
        from tui.run_result import live_results

        live = list(cmp.runs) if self.read else live_results(self.store, list(cmp.runs))
        table.add_row(cell(cut(RESULT_ROW, key_w), "b"),
                      *[cell(cut(_result(r), value_w)) for r in live])
        for key, values in cmp.config_diff.items():
            table.add_row(cell(cut(key, key_w), "yellow"),
                          *[cell(cut(_fmt(v), value_w)) for v in values])
        for key, values in cmp.metrics.items():
            if all(v is None or isinstance(v, (int, float)) for v in values):
                best = _best(key, values)
                table.add_row(cell(cut(key, key_w)), *[
                    cell(metric(v, key), "b green" if v is not None and v == best else "")
                    for v in values])

    def on_importances_found(self, msg: ImportancesFound) -> None:
        line = self.query_one("#compare-importance", Static)
        line.update(msg.text)
        line.remove_class("-hidden")

    def action_scroll(self, how: str) -> None:
        """Page keys scroll the overview whatever has focus; the examples table pages
        through its own rows."""
        if self.query_one(ContentSwitcher).current == "compare-overview":
            getattr(self.query_one("#compare-overview", VerticalScroll), f"action_{how}")()
        else:
            table = self.query_one("#examples-table", DataTable)
            getattr(table, f"action_{how}")()

    def action_toggle_examples(self) -> None:
        """Between the overview and the examples where two runs disagree."""
        switcher = self.query_one(ContentSwitcher)
        if switcher.current == "compare-examples":
            switcher.current = "compare-overview"
            self.query_one("#compare-overview").focus()
            return
        switcher.current = "compare-examples"
        view = self.query_one(ExamplesView)
        self.query_one("#examples-table").focus()
        if self._examples_asked:
            return
        if self.read is not None:  # runs of several machines: their data is not all here
            self._examples_asked = True
            view.show(ExamplesCompared((0, 0), None, error=(
                "Examples are compared between two runs of one machine (their data is "
                "read again there): `hubtune runs compare A B --examples --remote NAME`.")))
            return
        ids = tuple(self.run_ids)
        view.wait(ids)
        if len(ids) == 2:
            self._examples_asked = True
            path = self.store.path
            self.app.engine.submit(lambda: read_disagreements(path, ids), to=self)

    def on_examples_compared(self, msg: ExamplesCompared) -> None:
        self.query_one(ExamplesView).show(msg)


def _importances(sweep_id: str) -> ImportancesFound | None:
    """On the engine thread (Optuna's import is slow): a search's importances as a line."""
    from engine.runs.search import importances, load_spec

    spec = load_spec(sweep_id)
    if spec is None:
        return None
    found = importances(spec)
    if not found:
        return ImportancesFound("Parameter importance: shown once a few trials have "
                                "completed.")
    ranked = sorted(found.items(), key=lambda kv: -kv[1])
    return ImportancesFound("Parameter importance: " + ", ".join(
        f"{literal(k, 60)} {v:.2f}" for k, v in ranked))


def _status(run) -> str:
    """A pruned trial with the step its search stopped it at."""
    pruned = (run.summary or {}).get("pruned_at")
    return f"pruned@{pruned}" if run.status == "pruned" and pruned is not None else run.status


def _result(run) -> str:
    """The run's result as `runs compare` shows it: `acc 0.763 (best evaluation)`."""
    from tui.run_result import run_result

    res = run_result(run)
    return f"{res.short} {metric(res.value)} ({res.label})" if res.value is not None else "-"


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
