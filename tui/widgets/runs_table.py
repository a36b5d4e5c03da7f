"""The runs screen's table: one row per run, updated in place as runs change.

Rows are keyed by run id. A refresh with the same runs in the same order only
rewrites the cells that changed, so the cursor and scroll stay put while a
run trains; a new order rebuilds the table and keeps the cursor on its run.
Names, models and datasets are the user's own text: cells are Text, never
markup. `list_runs` is what the screen's polling thread calls for the rows.

A run waiting in the queue shows its place and the slots it waits for in its status
(`#2 · gpu1`, tui.queue_view.QueueSpot); the best run of a sweep has a star by its id.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from store import Run, RunStore
from tui.formatting import best_metric, cell, cut, duration, main_metric, short_task, status_text
from tui.queue_view import QueueSpot, split_search

COLUMNS = (("id", "ID"), ("status", "Status"), ("name", "Name"), ("model", "Model"),
           ("task", "Task"), ("data", "Data"), ("best", "Best"), ("duration", "Took"),
           ("started", "Started"))
SORTS = (("-created", "newest first"), ("name", "name"), ("status", "status"),
         ("model", "model"), ("task", "task"), ("best", "best metric"))
"""What `o` cycles through; 'best' sorts by each run's main metric, best first."""
STATUS_FILTERS = (None, "running", "completed", "failed", "stopped", "interrupted", "queued")
BEST_MARK = "★"
"""By the id of a sweep's best run."""


def list_runs(store: RunStore, *, search: str | None, status: str | None,
              sort: str) -> list[Run]:
    """The runs to show, filtered and sorted (called in the polling thread); `sweep:ID`
    in the search keeps one sweep's runs."""
    search, sweep = split_search(search)
    runs = store.list_runs(search=search, status=status, sweep=sweep,
                           sort="-created" if sort == "best" else sort, limit=500)
    if sort == "best":
        from engine.core.config import lower_is_better

        def key(r: Run):
            _, value = best_metric(r)
            if value is None:
                return (1, 0.0)
            return (0, value if lower_is_better(main_metric(r)) else -value)

        runs.sort(key=key)
    return runs


def row_cells(r: Run, marked: bool, spot: QueueSpot | None = None,
              best: bool = False) -> tuple:
    """One run's cells, in COLUMNS order; a marked run's id has a dot, a sweep's best
    run a star, and a waiting run's status its place in the queue."""
    name, value = best_metric(r)
    data = (r.dataset or "-").rstrip("/").rsplit("/", 1)[-1]
    return (
        ("● " if marked else "") + (BEST_MARK if best else "") + str(r.id),
        status_text(r.status) if spot is None else Text(spot.cell, style="dim"),
        cell(cut(r.name, 18)),
        cell(cut(r.model_id or "-", 20)),
        cell(short_task(r.task)),
        cell(cut(data, 12)),
        cell(f"{name} {value:.3g}" if value is not None else "-"),
        duration(r.duration_s),
        cell((r.started_utc or r.created_utc or "")[5:16].replace("T", " ")),
    )


class RunsTable(DataTable):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spots: dict[int, QueueSpot] = {}
        """Waiting runs' places in the queue, as last shown."""
        self.best: set[int] = set()
        """The best run of each sweep listed."""

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.add_column(label, key=key)

    def show(self, runs: list[Run], marked: set[int], selected: int | None,
             spots: dict[int, QueueSpot] | None = None, best: set[int] | None = None) -> None:
        """Show `runs`, keeping the cursor on `selected` if the list is rebuilt."""
        self.spots, self.best = spots or {}, best or set()
        rows = {r.id: self._cells(r, r.id in marked) for r in runs}
        wanted_keys = [str(r.id) for r in runs]
        if [row_key.value for row_key in self.rows] != wanted_keys:
            self.clear()
            for r in runs:
                self.add_row(*rows[r.id], key=str(r.id))
            if selected is not None and str(selected) in wanted_keys:
                self.move_cursor(row=self.get_row_index(str(selected)))
            return
        for r in runs:
            for (col, _), value in zip(COLUMNS, rows[r.id], strict=True):
                if self.get_cell(str(r.id), col) != value:
                    self.update_cell(str(r.id), col, value, update_width=True)

    def holds(self, run_id: int) -> bool:
        return str(run_id) in [k.value for k in self.rows]

    def move_to(self, run_id: int) -> None:
        self.move_cursor(row=self.get_row_index(str(run_id)))

    def show_mark(self, run: Run, marked: bool) -> None:
        self.update_cell(str(run.id), "id", self._cells(run, marked)[0], update_width=True)

    def _cells(self, run: Run, marked: bool) -> tuple:
        spot = self.spots.get(run.id) if run.waiting else None
        return row_cells(run, marked, spot, run.id in self.best)
