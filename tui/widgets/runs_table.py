"""The runs screen's table: one row per run, updated in place as runs change.

Rows are keyed by run id. A refresh with the same runs in the same order only
rewrites the cells that changed, so the cursor and scroll stay put while a
run trains; a new order rebuilds the table and keeps the cursor on its run.
Names, models and datasets are the user's own text: cells are Text, never
markup. `list_runs` is what the screen's polling thread calls for the rows.

The Result column (key `best`) is each run's result, as `runs ls` and the run panel name
it: the main metric of the model it keeps (its best evaluation's with train.restore_best,
else its last; tui.run_result).

A run waiting in the queue shows its place and the slots it waits for in its status
(`#2 · gpu1`, tui.queue_view.QueueSpot); the best run of a sweep has a star by its id;
a run whose watch rules found something has a flag and their count after its status
(`running ⚑2`, tui.watch_badges), and the bell rings for a new one when it asks.

Runs of other machines (tui/remote_runs.py: a `Run` with a `remote` name) are keyed
`NAME:ID`, and bring a Host column (`local` for this machine's); with no remote run
listed the table is as it always was. `host:NAME` in the search keeps one host's runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

from store import Run, RunStore
from tui.formatting import (
    best_metric,
    cell,
    duration,
    main_metric,
    metric,
    short_task,
    started,
    status_text,
)
from tui.queue_view import QueueSpot, split_search
from tui.watch_badges import Bell, badge

COLUMNS = (("id", "ID"), ("host", "Host"), ("status", "Status"), ("name", "Name"), ("model", "Model"),
           ("task", "Task"), ("data", "Data"), ("best", "Result"), ("duration", "Took"),
           ("started", "Started"))
SORTS = (("-created", "newest first"), ("name", "name"), ("status", "status"),
         ("model", "model"), ("task", "task"), ("best", "result"))
"""What `o` cycles through; 'best' sorts by each run's result (its kept model's main
metric), best first."""
STATUS_FILTERS = (None, "running", "completed", "failed", "stopped", "interrupted", "pruned",
                  "queued")
BEST_MARK = "★"
"""By the id of a sweep's best run."""
HOST_PREFIX = "host:"
"""`host:NAME` in the search box keeps the runs of one remote (`host:local`: this
machine's)."""
LOCAL = "local"
"""The Host cell of this machine's runs."""


def host_of(run: Run) -> str | None:
    """The remote a listed run is on; None for this machine's."""
    return getattr(run, "remote", None) or None


def run_key(run: Run) -> str:
    """The run's row key: its id here, `NAME:ID` for a remote's (ids repeat across
    machines)."""
    host = host_of(run)
    return str(run.id) if host is None else f"{host}:{run.id}"


def mark_key(run: Run) -> int | str:
    """How the runs screen's marks name a run: its id here, `NAME:ID` for a remote's."""
    return run.id if host_of(run) is None else run_key(run)


def split_host(text: str | None) -> tuple[str | None, str | None]:
    """The search box's text as (the rest, the host named by `host:NAME`, or None)."""
    import re

    host = None

    def take(match: re.Match) -> str:
        nonlocal host
        host = match.group(1)
        return " "

    rest = re.sub(rf"(?i)(?:^|\s){HOST_PREFIX}(\S+)", take, text or "").strip()
    return rest or None, host


def list_runs(store: RunStore, *, search: str | None, status: str | None,
              sort: str) -> list[Run]:
    """The runs to show, filtered and sorted (called in the polling thread); `sweep:ID`
    in the search keeps one sweep's runs, and `host:NAME` none of this machine's unless
    NAME is `local`. A running run's result so far is read from its evaluations
    (tui.run_result), so its Result cell fills at its first evaluation."""
    from tui.run_result import live_results

    search, host = split_host(search)
    if host is not None and host != LOCAL:
        return []
    search, sweep = split_search(search)
    runs = live_results(store, store.list_runs(
        search=search, status=status, sweep=sweep,
        sort="-created" if sort == "best" else sort, limit=500))
    if sort == "best":
        sort_runs(runs, sort)
    return runs


def sort_runs(runs: list[Run], sort: str) -> list[Run]:
    """Sort `runs` in place by a key of SORTS, as the store sorts one machine's (the
    runs of several machines are merged with it)."""
    from engine.core.config import lower_is_better

    def best(r: Run):
        _, value = best_metric(r)
        if value is None:
            return (1, 0.0)
        return (0, value if lower_is_better(main_metric(r)) else -value)

    if sort == "best":
        runs.sort(key=best)
    elif sort == "-created":
        runs.sort(key=lambda r: r.created_utc or "", reverse=True)
    else:
        field = {"model": "model_id"}.get(sort, sort)
        runs.sort(key=lambda r: str(getattr(r, field, None) or ""))
    return runs


REQUIRED = ("id", "status", "name", "best", "duration")
"""Columns shown at any width (80 columns included)."""
OPTIONAL = (("model", 12, 28), ("task", 11, 11), ("data", 10, 16), ("started", 11, 11))
"""(key, least, most characters) of the columns shown when there is room, the first
first: at 80 columns the model may stay, shortened to its repo name; data goes."""
NAME_CHARS = (20, 24, 48)
"""The name column: at least, before the others grow, and at most (then an ellipsis)."""
CELL_PAD = 2
"""A DataTable cell's padding, one each side."""
SCROLLBAR = 2
"""Kept free for the vertical scrollbar of a long list."""
HOST_CHARS = 12
"""The host column at most (then an ellipsis)."""


@dataclass(frozen=True)
class Layout:
    """Which columns the table shows at its width, and how wide the cut ones are."""

    columns: tuple[str, ...]
    """Keys of COLUMNS shown, in COLUMNS order."""
    widths: dict[str, int]
    """Characters for the name and each optional column shown (cut with an ellipsis)."""


def plan_layout(width: int, rows: list[dict[str, Text]], hosts: bool = False) -> Layout:
    """The columns that fit `width` cells for these rows: ID, status, name, best and
    duration always (and the host, where other machines' runs are listed: `hosts`);
    then model, task, data and started while they fit; what is left widens the name,
    then the model and data, up to their limits."""
    labels = dict(COLUMNS)

    def natural(key: str) -> int:
        return max([cell_len(labels[key])] + [r[key].cell_len for r in rows])

    required = REQUIRED + (("host",) if hosts else ())
    room = width - SCROLLBAR - sum(natural(k) + CELL_PAD for k in REQUIRED if k != "name")
    widths = {"name": min(natural("name"), NAME_CHARS[0])}
    if hosts:
        widths["host"] = min(natural("host"), HOST_CHARS)
    room -= sum(w + CELL_PAD for w in widths.values())
    for key, least, most in OPTIONAL:
        want = min(natural(key), least if key in ("model", "data") else most)
        if want + CELL_PAD <= room:
            widths[key] = want
            room -= want + CELL_PAD
    for key, most in (("name", NAME_CHARS[1]), ("model", OPTIONAL[0][2]),
                      ("data", OPTIONAL[2][2]), ("name", NAME_CHARS[2])):
        if key in widths and room > 0:
            grow = max(0, min(natural(key), most) - widths[key])
            grow = min(grow, room)
            widths[key] += grow
            room -= grow
    shown = set(required) | widths.keys()
    return Layout(tuple(k for k, _ in COLUMNS if k in shown), widths)


def row_cells(r: Run, marked: bool, spot: QueueSpot | None = None,
              best: bool = False, watched: int = 0) -> dict[str, Text]:
    """One run's cells by column key, whole; a marked run's id has a dot, a sweep's best
    run a star, a waiting run's status its place in the queue, and a watched run's the
    count of its findings."""
    name, value = best_metric(r)
    data = (r.dataset or "-").rstrip("/").rsplit("/", 1)[-1]
    status = status_text(r.status) if spot is None else Text(spot.cell, style="dim")
    if watched:
        status = Text.assemble(status, " ", (badge(watched), "bold yellow"))
    return {
        "id": cell(("● " if marked else "") + (BEST_MARK if best else "") + str(r.id)),
        "host": cell(host_of(r) or LOCAL, style="" if host_of(r) else "dim"),
        "status": status,
        "name": cell(r.name),
        "model": cell(r.model_id or "-"),
        "task": cell(short_task(r.task)),
        "data": cell(data),
        "best": cell(f"{name} {metric(value)}" if value is not None else "-"),
        "duration": Text(duration(r.duration_s)),
        "started": cell(started(r)),
    }


def fit_cells(cells: dict[str, Text], layout: Layout) -> tuple[Text, ...]:
    """The cells of the columns shown, cut to their widths with an ellipsis; a model id
    too long for its column is shown by its repo name (`owner/` dropped) first."""
    out = []
    for key in layout.columns:
        text = cells[key]
        width = layout.widths.get(key)
        if width is not None and text.cell_len > width:
            if key == "model" and "/" in text.plain:
                text = Text(text.plain.rstrip("/").rsplit("/", 1)[-1], style=text.style)
            text = text.copy()
            text.truncate(width, overflow="ellipsis")
        out.append(text)
    return tuple(out)


class RunsTable(DataTable):
    """The runs, one row each; the columns follow the table's width (Layout)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.spots: dict[int, QueueSpot] = {}
        """Waiting runs' places in the queue, as last shown."""
        self.best: set[int] = set()
        """The best run of each sweep listed."""
        self.layout_shown: Layout | None = None
        """The columns shown now; None before the first rows."""
        self.watched: dict[int, int] = {}
        """Findings of each run's watch rules, as last read (tui.watch_badges)."""
        self._bell = Bell()
        self._shown: tuple[list[Run], set[int], int | None] = ([], set(), None)
        """The last `show`'s runs, marks and selection, to lay out again on a resize."""

    def show(self, runs: list[Run], marked: set[int], selected: int | str | None,
             spots: dict[int, QueueSpot] | None = None, best: set[int] | None = None) -> None:
        """Show `runs`, keeping the cursor on `selected` (an id here, or a remote run's
        key, `run_key`) if the list is rebuilt. Marks, queue places and sweep stars are
        this machine's runs'."""
        self.spots, self.best = spots or {}, best or set()
        self._shown = (runs, marked, selected)
        whole = {run_key(r): self._cells(r, mark_key(r) in marked) for r in runs}
        hosts = any(host_of(r) for r in runs)
        layout = plan_layout(self._width(), list(whole.values()), hosts)
        rows = {k: fit_cells(c, layout) for k, c in whole.items()}
        if layout != self.layout_shown or [k.value for k in self.rows] != list(rows):
            self._rebuild(layout, runs, rows, selected)
            return
        for key, values in rows.items():
            for col, value in zip(layout.columns, values, strict=True):
                if self.get_cell(key, col) != value:
                    self.update_cell(key, col, value, update_width=True)

    def _rebuild(self, layout: Layout, runs: list[Run], rows: dict,
                 selected: int | str | None) -> None:
        """Every row again, under the columns of `layout`, the cursor kept on its run."""
        if layout != self.layout_shown:
            self.clear(columns=True)
            labels = dict(COLUMNS)
            for key in layout.columns:
                self.add_column(labels[key], key=key)
            self.layout_shown = layout
        else:
            self.clear()
        for key, values in rows.items():
            self.add_row(*values, key=key)
        if selected is not None and self.holds(selected):
            self.move_cursor(row=self.get_row_index(str(selected)))

    def on_resize(self) -> None:
        runs, marked, selected = self._shown
        if runs:
            self.show(runs, marked, selected, self.spots, self.best)

    def _width(self) -> int:
        """Cells across the table (the screen's before the first layout)."""
        return self.size.width or self.app.size.width

    def holds(self, run_id: int | str) -> bool:
        """Whether run `run_id` (or a remote run's key) is listed."""
        return str(run_id) in self.rows

    def move_to(self, run_id: int | str) -> None:
        self.move_cursor(row=self.get_row_index(str(run_id)))

    def show_mark(self, run: Run, marked: bool) -> None:
        runs, marks, selected = self._shown
        key = mark_key(run)
        self._shown = (runs, marks | {key} if marked else marks - {key}, selected)
        if self.layout_shown is not None and "id" in self.layout_shown.columns:
            text = fit_cells(self._cells(run, marked), self.layout_shown)[0]
            self.update_cell(run_key(run), "id", text, update_width=True)

    def take_watched(self, counts: dict[int, int], runs: list[Run]) -> None:
        """The watch findings read with `runs` (shown at the next `show`); the bell rings
        when a run that asks for it (train.watch.bell) has a new one."""
        self.watched = counts
        if self._bell.rings(runs, counts):
            self.app.bell()

    def _cells(self, run: Run, marked: bool) -> dict[str, Text]:
        if host_of(run) is not None:
            return row_cells(run, marked)
        spot = self.spots.get(run.id) if run.waiting else None
        return row_cells(run, marked, spot, run.id in self.best, self.watched.get(run.id, 0))
