"""The runs screen: every recorded run, live, with the selected one in detail.

A thread worker polls the store a few times a second on its own connection
and posts messages; the screen only renders them, so a slow disk never
freezes the UI and runs started elsewhere (another TUI, the CLI) show up
on their own.
"""

from __future__ import annotations

import threading

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import get_current_worker

from store import Run, RunStore
from tui.formatting import (
    best_metric,
    cell,
    cut,
    duration,
    main_metric,
    short_task,
    status_text,
)
from tui.messages import RunDetailRefreshed, RunsRefreshed
from tui.screens.confirm import ConfirmScreen
from tui.widgets.run_detail import RunDetail

POLL_INTERVAL_S = 0.5
"""How often the poll thread looks at the store (tui.run_watcher decides what to re-read)."""
COLUMNS = (("id", "ID"), ("status", "Status"), ("name", "Name"), ("model", "Model"),
           ("task", "Task"), ("data", "Data"), ("best", "Best"), ("duration", "Took"),
           ("started", "Started"))
SORTS = (("-created", "newest first"), ("name", "name"), ("status", "status"),
         ("model", "model"), ("task", "task"), ("best", "best metric"))
"""What `o` cycles through; 'best' sorts by each run's main metric, best first."""
STATUS_FILTERS = (None, "running", "completed", "failed", "stopped", "interrupted")


class RunsScreen(Screen):
    """Run history: filter, inspect, stop and delete runs."""

    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("escape", "clear_search", "Clear", show=False),
        Binding("o", "cycle_sort", "Sort"),
        Binding("v", "cycle_status", "Status filter", show=False),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("f", "fork", "Fork"),
        Binding("R", "resume", "Resume"),
        Binding("p", "playground", "Try it"),
        Binding("t", "edit_tags", "Tags", show=False),
        Binding("n", "edit_notes", "Notes", show=False),
        Binding("s", "stop_run", "Stop"),
        Binding("delete,x", "delete_run", "Delete"),
        Binding("r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store
        self.selected_id: int | None = None
        """The run under the cursor; read by the polling thread."""
        self.search_text: str = ""
        """Filter applied by the polling thread."""
        self.sort = SORTS[0][0]
        self.status_filter: str | None = None
        self._wake = threading.Event()
        self._runs: dict[int, Run] = {}
        self.marked: set[int] = set()
        """Runs marked with space, for Compare."""
        self._pending_select: int | None = None
        """A run to put the cursor on once the list holds it (a run just launched)."""

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="runs-pane"):
            yield Input(placeholder="Search runs by name, model, task, dataset, tag…",
                        id="run-search", classes="-hidden")
            yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            yield Static("No runs yet: press 3 to set one up, or run `hubtune train CONFIG`.",
                         id="runs-empty")
        yield RunDetail(id="run-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self.title = "hubtune"
        self.sub_title = "runs"
        table.focus()
        self._poll()

    @work(thread=True, exit_on_error=False, group="poll-runs")
    def _poll(self) -> None:
        from tui.run_watcher import RunWatcher

        worker = get_current_worker()
        store = RunStore(self.store.path)  # a connection of this thread's own
        try:
            watcher = RunWatcher(store, self.post_message, self._list)
            woken = False
            while not worker.is_cancelled:
                woken = watcher.reap() or woken
                watcher.poll_list(woken)
                if self.selected_id is not None:
                    watcher.poll_detail(self.selected_id)
                woken = self._wake.wait(POLL_INTERVAL_S)
                self._wake.clear()
        finally:
            store.close()

    def _list(self, store: RunStore) -> list[Run]:
        """The runs to show, filtered and sorted as the screen asks (called in the thread)."""
        sort = self.sort
        runs = store.list_runs(search=self.search_text or None, status=self.status_filter,
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

    def on_runs_refreshed(self, msg: RunsRefreshed) -> None:
        table = self.query_one(DataTable)
        self._runs = {r.id: r for r in msg.runs}
        rows = {r.id: self._cells(r) for r in msg.runs}
        current_keys = [row_key.value for row_key in table.rows]
        wanted_keys = [str(r.id) for r in msg.runs]
        if current_keys != wanted_keys:
            selected = self.selected_id
            table.clear()
            for r in msg.runs:
                table.add_row(*rows[r.id], key=str(r.id))
            if selected is not None and str(selected) in wanted_keys:
                table.move_cursor(row=table.get_row_index(str(selected)))
        else:
            for r in msg.runs:
                for (col, _), value in zip(COLUMNS, rows[r.id], strict=True):
                    if table.get_cell(str(r.id), col) != value:
                        table.update_cell(str(r.id), col, value, update_width=True)
        self.query_one("#runs-empty").set_class(bool(msg.runs), "-hidden")
        pending = self._pending_select
        if pending is not None and str(pending) in wanted_keys:
            table.move_cursor(row=table.get_row_index(str(pending)))
            self._pending_select = None
        if self.selected_id is None and msg.runs:
            self._select(msg.runs[0].id)

    def _cells(self, r: Run) -> tuple:
        name, value = best_metric(r)
        data = (r.dataset or "-").rstrip("/").rsplit("/", 1)[-1]
        return (
            ("● " if r.id in self.marked else "") + str(r.id),
            status_text(r.status),
            cell(cut(r.name, 18)),
            cell(cut(r.model_id or "-", 20)),
            cell(short_task(r.task)),
            cell(cut(data, 12)),
            cell(f"{name} {value:.3g}" if value is not None else "-"),
            duration(r.duration_s),
            cell((r.started_utc or r.created_utc or "")[5:16].replace("T", " ")),
        )

    def on_run_detail_refreshed(self, msg: RunDetailRefreshed) -> None:
        if msg.run.id == self.selected_id:
            self.query_one(RunDetail).show(msg)

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self._select(int(event.row_key.value))

    def select_run(self, run_id: int) -> None:
        """Put the cursor on `run_id` now, or as soon as the next refresh lists it."""
        table = self.query_one(DataTable)
        if str(run_id) in [k.value for k in table.rows]:
            table.move_cursor(row=table.get_row_index(str(run_id)))
        else:
            self._pending_select = run_id  # the list only changes when runs do
        self._select(run_id)
        self._wake.set()

    def _select(self, run_id: int) -> None:
        if run_id != self.selected_id:
            self.selected_id = run_id
            self._wake.set()

    # -- actions -------------------------------------------------------

    def action_search(self) -> None:
        box = self.query_one("#run-search", Input)
        box.remove_class("-hidden")
        box.focus()

    def action_clear_search(self) -> None:
        box = self.query_one("#run-search", Input)
        box.value = ""
        box.add_class("-hidden")
        self.query_one(DataTable).focus()

    @on(Input.Changed, "#run-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.search_text = event.value.strip()
        self._wake.set()

    @on(Input.Submitted, "#run-search")
    def _search_submitted(self) -> None:
        self.query_one(DataTable).focus()

    def action_refresh(self) -> None:
        self._wake.set()

    def action_cycle_sort(self) -> None:
        keys = [k for k, _ in SORTS]
        self.sort = keys[(keys.index(self.sort) + 1) % len(keys)]
        self._show_view()

    def action_cycle_status(self) -> None:
        i = STATUS_FILTERS.index(self.status_filter)
        self.status_filter = STATUS_FILTERS[(i + 1) % len(STATUS_FILTERS)]
        self._show_view()

    def _show_view(self) -> None:
        """Say how the list is sorted and filtered, and refresh it."""
        parts = ["runs", f"by {dict(SORTS)[self.sort]}"]
        if self.status_filter:
            parts.append(f"{self.status_filter} only")
        self.sub_title = " · ".join(parts)
        self._wake.set()

    def action_mark(self) -> None:
        if self.selected_id is None:
            return
        self.marked ^= {self.selected_id}
        run = self._runs.get(self.selected_id)
        if run is not None:
            self.query_one(DataTable).update_cell(str(run.id), "id", self._cells(run)[0],
                                                 update_width=True)
        self.query_one(DataTable).action_cursor_down()

    def action_edit_tags(self) -> None:
        from tui.screens.edit import EditScreen

        run = self._runs.get(self.selected_id or -1)
        if run is None:
            return

        shown = ", ".join(run.tags)

        def save(value: str | None) -> None:
            if value is not None and value != shown:
                tags = [t.strip() for t in value.split(",") if t.strip()]
                self._save(lambda: self.store.set_tags(run.id, tags))

        self.app.push_screen(EditScreen(f"Tags of run #{run.id} (comma-separated)",
                                        shown, "baseline, frozen, lr-sweep"), save)

    def action_edit_notes(self) -> None:
        from tui.screens.edit import EditScreen

        run = self._runs.get(self.selected_id or -1)
        if run is None:
            return

        def save(value: str | None) -> None:
            if value is not None and value != run.notes:
                self._save(lambda: self.store.set_notes(run.id, value.strip()))

        self.app.push_screen(EditScreen(f"Note on run #{run.id}", run.notes,
                                        "what this run tried, what it showed"), save)

    def _save(self, write) -> None:
        """Write tags or a note; the store refuses what a table cannot show (too long, a
        control character), and says so in a toast rather than ending the app."""
        from store import StoreError

        try:
            write()
        except StoreError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self._wake.set()

    def action_playground(self) -> None:
        from tui.screens.playground import PlaygroundScreen

        run = self._runs.get(self.selected_id or -1)
        if run is None:
            return
        if run.status != "completed":
            self.notify(f"Run #{run.id} is {run.status}; the playground needs a completed run.",
                        severity="warning")
            return
        self.app.push_screen(PlaygroundScreen(run))

    def action_compare(self) -> None:
        from tui.screens.compare import CompareScreen

        ids = sorted(i for i in self.marked if i in self._runs)
        if len(ids) < 2:
            self.notify("Mark two or more runs with space, then press c.", severity="warning")
            return
        self.app.push_screen(CompareScreen(self.store, ids))

    async def action_fork(self) -> None:

        from engine.core.errors import HubtuneError
        from engine.lifecycle import fork_config

        run = self._runs.get(self.selected_id or -1)
        if run is None:
            return
        try:
            cfg = fork_config(run)
        except HubtuneError as exc:
            self.notify(f"Run {run.id}'s config no longer loads: {exc}", severity="error")
            return
        await self.app.new_run(config=cfg, parent_id=run.id)

    def action_resume(self) -> None:
        from engine.core.errors import HubtuneError
        from engine.worker import resume_run

        run = self._runs.get(self.selected_id or -1)
        if run is None:
            return
        try:
            checkpoint = resume_run(self.store, run.id)
        except HubtuneError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.notify(f"Resuming run {run.id} from {checkpoint.path.name}.")
        self._wake.set()

    def action_stop_run(self) -> None:
        run = self._runs.get(self.selected_id or -1)
        if run is None:
            return
        from engine.core.errors import HubtuneError
        from engine.lifecycle import check_stoppable

        try:
            check_stoppable(run)
        except HubtuneError as exc:
            self.notify(str(exc), severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.store.request_stop(run.id)
                self.notify(f"Asked run {run.id} to stop; it checkpoints and ends shortly.")
                self._wake.set()

        self.app.push_screen(ConfirmScreen(f"Stop run {run.id} ({cut(run.name, 60)})?"),
                             confirmed)

    def action_delete_run(self) -> None:
        run = self._runs.get(self.selected_id or -1)
        if run is None:
            return
        from engine.core.errors import HubtuneError
        from engine.lifecycle import check_deletable

        try:
            check_deletable(run)
        except HubtuneError as exc:
            self.notify(str(exc), severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                from store import StoreError

                try:  # another process may have resumed (or deleted) it since the question
                    self.store.delete_run(run.id)
                except StoreError as exc:
                    self.notify(str(exc), severity="warning")
                    return
                self.selected_id = None
                self.notify(f"Deleted run {run.id}.")
                self._wake.set()

        self.app.push_screen(
            ConfirmScreen(f"Delete run {run.id} ({cut(run.name, 60)}) with its metrics and "
                          "files?"),
            confirmed,
        )
