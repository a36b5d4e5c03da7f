"""Two or more runs side by side: the config keys that differ, metrics, and loss curves."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label, Sparkline, Static

from store import Comparison, RunStore
from tui.formatting import cut


class CompareScreen(ModalScreen[None]):
    """Built from a `Comparison` read on open; Esc closes it."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, store: RunStore, run_ids: list[int]) -> None:
        super().__init__()
        self.store = store
        self.run_ids = run_ids

    def compose(self) -> ComposeResult:
        with Vertical(id="compare-box"):
            yield Static("", id="compare-title")
            yield DataTable(id="compare-table", zebra_stripes=True, cursor_type="row")
            yield Label("training loss, one row per run (same step scale)", classes="curve-label")
            yield VerticalScroll(id="compare-curves")

    def on_mount(self) -> None:
        cmp: Comparison = self.store.compare(self.run_ids)
        self.query_one("#compare-title", Static).update(
            f"[b]Comparing {len(cmp.runs)} runs[/b]: {len(cmp.config_diff)} config keys differ "
            "(Esc closes)")
        table = self.query_one("#compare-table", DataTable)
        table.add_column("", key="key")
        for r in cmp.runs:
            table.add_column(cut(f"#{r.id} {r.name}", 24), key=str(r.id))
        table.add_row("[b]status[/b]", *[r.status for r in cmp.runs])
        for key, values in cmp.config_diff.items():
            table.add_row(f"[yellow]{key}[/]", *[_fmt(v) for v in values])
        for key, values in cmp.metrics.items():
            if all(v is None or isinstance(v, (int, float)) for v in values):
                best = _best(key, values)
                table.add_row(key, *[f"[b green]{_fmt(v)}[/]" if v is not None and v == best
                                     else _fmt(v) for v in values])
        curves = self.query_one("#compare-curves", VerticalScroll)
        series = [self.store.series(r.id, "loss") for r in cmp.runs]
        longest = max((s.steps[-1] for s in series if s.steps), default=0)
        for r, s in zip(cmp.runs, series, strict=True):
            curves.mount(Label(f"#{r.id} {r.name}", classes="curve-label"))
            # Pad shorter runs so every curve shares the step axis.
            values = _resample(s.steps, s.values, longest, 100)
            curves.mount(Sparkline(values, classes="compare-curve"))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _best(key: str, values) -> float | None:
    nums = [v for v in values if isinstance(v, (int, float))]
    if not nums or key in ("steps", "epochs", "best_step"):
        return None
    return min(nums) if "loss" in key or key.endswith(("mse", "mae")) else max(nums)


def _resample(steps: list[int], values: list[float], last_step: int, width: int) -> list[float]:
    """`width` buckets over 0..last_step; buckets past a run's end stay at 0."""
    if not steps or last_step <= 0:
        return []
    out = [0.0] * width
    for step, value in zip(steps, values, strict=True):
        out[min(width - 1, step * width // (last_step + 1))] = value
    for i in range(1, width):  # carry values forward over empty buckets inside the run
        if out[i] == 0.0 and i * (last_step + 1) // width <= steps[-1]:
            out[i] = out[i - 1]
    return out
