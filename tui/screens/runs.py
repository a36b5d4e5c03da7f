"""The runs screen: every recorded run, live, with the selected one in detail.

A thread worker polls the store a few times a second on its own connection
and posts messages; the screen only renders them, so a slow disk never
freezes the UI and runs started elsewhere (another TUI, the CLI) show up
on their own.

The queue and sweep keys live in tui/screens/runs_queue.py (mixed in); the queue's
state reaches the table and the subtitle with each refresh (tui/queue_view.py).
Other machines' runs are polled by tui/remote_runs.py and merged into the list; the keys
that reach them as well as this machine's (mark, compare, fork) are in
tui/screens/runs_remote.py (mixed in).
"""

from __future__ import annotations

import threading

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static
from textual.worker import get_current_worker

from store import Run, RunStore
from tui.background import background
from tui.formatting import cut, plain
from tui.messages import RunDetailRefreshed, RunsRefreshed
from tui.queue_view import QueueView, queue_title
from tui.remote_runs import RemoteRuns, detail_of
from tui.screens.confirm import ConfirmScreen
from tui.screens.edit import edit_notes, edit_tags
from tui.screens.runs_queue import QUEUE_BINDINGS, RunsQueueKeys
from tui.screens.runs_remote import RunsRemoteKeys
from tui.widgets.footer import KeysFooter
from tui.widgets.run_detail import RunDetail
from tui.widgets.runs_table import SORTS, STATUS_FILTERS, RunsTable, list_runs, run_key

POLL_INTERVAL_S = 0.5
"""How often the poll thread looks at the store (tui.run_watcher decides what to re-read)."""
NO_RUNS = ("No runs yet: press 3 to set one up (runs started from the command line show up "
           "here too).")


class RunsScreen(RunsRemoteKeys, RunsQueueKeys, Screen):
    """Run history: filter, inspect, stop and delete runs; order the queue."""

    BINDINGS = [
        # The footer shows the first few after the app's own keys (tui.widgets.footer);
        # show=False ones are in the help screen (?) and the command palette (Ctrl+P).
        Binding("slash", "search", "Search"),
        Binding("space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("f", "fork", "Fork"),
        Binding("s", "stop_run", "Stop"),
        Binding("x,delete", "delete_run", "Delete"),
        Binding("p", "playground", "Try it"),
        Binding("R", "resume", "Resume"),
        Binding("escape", "clear_search", "Clear", show=False),
        Binding("o", "cycle_sort", "Sort", show=False),
        Binding("v", "cycle_status", "Status filter", show=False),
        Binding("t", "edit_tags", "Tags", show=False),
        Binding("n", "edit_notes", "Notes", show=False),
        Binding("r", "refresh", "Refresh", show=False),
        *QUEUE_BINDINGS,
    ]

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store
        self.selected_id: int | None = None
        """The run under the cursor; read by the polling thread."""
        self.search_text: str = ""
        """Filter applied by the polling thread."""
        self.sort = SORTS[0][0]
        """The key of SORTS the list is sorted by; read by the polling thread."""
        self.status_filter: str | None = None
        """Only runs with this status (None: all); read by the polling thread."""
        self._wake = threading.Event()
        """Set to make the polling thread look now rather than at its next tick."""
        self._kick = threading.Event()
        """Set to have the polling thread start the queued runs that fit."""
        self.queue = QueueView()
        """The queue as the last refresh read it: paused or not, places of waiting runs."""
        self._runs: dict[int, Run] = {}
        """The runs listed, by id, as the last refresh read them."""
        self.marked: set[int | str] = set()
        """Runs marked with space, for Compare: ids here, `NAME:ID` remotes' (runs_remote)."""
        self._pending_select: int | None = None
        """A run to put the cursor on once the list holds it (a run just launched)."""
        self._best: set[int] = set()
        """The best run of each sweep listed."""
        self.remotes = RemoteRuns(store.path, lambda: (self.search_text, self.status_filter))
        """Other machines' runs (tui/remote_runs.py)."""

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="runs-pane"):
            yield Input(placeholder="Search runs by name, model, task, dataset, tag…",
                        id="run-search", classes="-hidden")
            yield RunsTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            yield Static(NO_RUNS, id="runs-empty")
        yield RunDetail(id="run-detail")
        yield KeysFooter()
        yield self.remotes

    def on_mount(self) -> None:
        self.title = "hubtune"
        self.sub_title = "runs"
        self.query_one(RunsTable).focus()
        self._poll()

    @background(what="reading the runs", group="poll-runs", restart_s=2.0)
    def _poll(self) -> None:
        from tui.run_watcher import RunWatcher

        worker = get_current_worker()
        store = RunStore(self.store.path)  # a connection of this thread's own
        try:
            # The list as the screen asks for it now: its filters are read each time.
            watcher = RunWatcher(store, self.post_message, lambda s: list_runs(
                s, search=self.search_text or None, status=self.status_filter, sort=self.sort))
            woken = False
            while not worker.is_cancelled:
                woken = watcher.reap() or woken
                if self._kick.is_set():
                    self._kick.clear()
                    watcher.kick_queue()
                watcher.poll_list(woken)
                watcher.poll_detail(self.selected_id)  # None: none, or a remote's run
                woken = self._wake.wait(POLL_INTERVAL_S)
                self._wake.clear()
        finally:
            store.close()

    def on_runs_refreshed(self, msg: RunsRefreshed) -> None:
        table = self.query_one(RunsTable)
        self._runs = {r.id: r for r in msg.runs}
        self.queue = msg.queue
        self._best = {s.best for s in msg.sweeps.values() if s.best is not None}
        table.take_watched(msg.watched, msg.runs)
        self.on_remote_runs_changed()
        pending = self._pending_select
        if pending is not None and table.holds(pending):
            table.move_to(pending)
            self._pending_select = None
        if self.selected_id is None and self.remotes.selected is None and msg.runs:
            self._select(msg.runs[0].id)

    def on_remote_runs_changed(self, _msg: object = None) -> None:
        """Show this machine's runs as last read, with the remotes' (tui/remote_runs.py)."""
        runs = self.remotes.merged(list(self._runs.values()), self.sort)
        self.query_one(RunsTable).show(runs, self.marked, self.remotes.selected_key or
                                       self.selected_id, self.queue.spots, self._best)
        self._show_title()
        self.query_one("#runs-empty").set_class(bool(runs), "-hidden")

    def on_remote_runs_run_read(self, msg: RemoteRuns.RunRead) -> None:
        if self.remotes.selected_key == run_key(msg.run):
            self.query_one(RunDetail).show(msg.detail or detail_of(msg.run))

    def on_run_detail_refreshed(self, msg: RunDetailRefreshed) -> None:
        if msg.run.id == self.selected_id:
            self.query_one(RunDetail).show(msg)

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = event.row_key.value if event.row_key is not None else None
        if key is not None and self.remotes.select(key):  # a remote's: RunRead shows it
            self.selected_id = None
        elif key is not None:
            self._select(int(key))
            self.query_one(RunDetail).show_local(int(key))  # back from a remote's run

    def select_run(self, run_id: int) -> None:
        """Put the cursor on `run_id` now, or as soon as the next refresh lists it."""
        table = self.query_one(RunsTable)
        if table.holds(run_id):
            table.move_to(run_id)
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
        self._show_view()

    @on(Input.Submitted, "#run-search")
    def _search_submitted(self) -> None:
        self.query_one(DataTable).focus()

    def action_refresh(self) -> None:
        self._wake.set()
        self.remotes.wake()

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
        self._show_title()
        self.query_one("#runs-empty", Static).update(empty_note(self.search_text, self.status_filter))
        self._wake.set()
        self.remotes.wake()

    def _show_title(self) -> None:
        """The subtitle: the sort and filters, the runs waiting and a paused queue."""
        parts = ["runs"]
        if self.sort != SORTS[0][0] or self.status_filter:
            parts.append(f"by {dict(SORTS)[self.sort]}")
        if self.status_filter:
            parts.append(f"{self.status_filter} only")
        self.sub_title = " · ".join(parts + queue_title(self.queue, self.search_text)
                                    + mark_note(self.marked) + self.remotes.title_parts())

    def action_edit_tags(self) -> None:
        edit_tags(self, self._current(), self._wake.set)

    def action_edit_notes(self) -> None:
        edit_notes(self, self._current(), self._wake.set)

    def action_playground(self) -> None:
        from tui.screens.playground import PlaygroundScreen

        run = self._current()
        if run is None:
            return
        if run.status != "completed":
            self.notify(f"Run #{run.id} is {run.status}; the playground needs a completed run.",
                        severity="warning")
            return
        self.app.push_screen(PlaygroundScreen(run))

    def action_resume(self) -> None:
        from engine.launch.resume import resume_run

        if self.remotes.selected is not None:  # a run of another machine: resumed there
            return self.remotes.act(self.remotes.selected, "resume")
        run = self._current()
        if run is None:
            return
        if run.status == "completed":  # the engine's sentence names the CLI's fork
            self.notify(f"Run {run.id} already completed; press f to fork it and train "
                        "more.", severity="warning")
            return

        def act(store) -> str:  # on a thread: the relaunch must not freeze the screen
            point = resume_run(store, run.id)
            return f"Resuming run {run.id} from {point.path.name}."

        self.app.act_on_run(act, self._wake.set)

    def action_delete_run(self) -> None:
        from engine.runs.lifecycle import check_deletable

        run = self._current()
        if run is None:
            return

        def deleted() -> None:
            if self.selected_id == run.id:
                self.selected_id = None
            self._kick_queue()  # slots it had been given go to the next in line

        def act(store) -> str:  # another process may have resumed or deleted it since
            store.delete_run(run.id)
            return f"Deleted run {run.id}."

        def delete() -> None:
            self.app.act_on_run(act, deleted)

        self._confirm(run, check_deletable, f"Delete run {run.id} ({cut(run.name, 60)}) with "
                                            "its metrics and files?", delete)

    def _confirm(self, run: Run, check, question: str, act) -> None:
        """`check` that `run` allows the action (else say why), ask `question`, then `act`."""
        from engine.core.errors import HubtuneError

        try:
            check(run)
        except HubtuneError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.app.push_screen(ConfirmScreen(question), lambda yes: act() if yes else None)

    def _current(self) -> Run | None:
        """The run under the cursor, as the last refresh listed it; None for a remote's
        (saying that only s and R reach it), which the other keys leave be."""
        if self.remotes.refuse_local_only():
            return None
        return self._runs.get(self.selected_id or -1)


def mark_note(marked: set[int | str]) -> list[str]:
    """The subtitle's part on marked runs: how many, and what space and c do (a toast
    would cover the compare screen that follows)."""
    if not marked:
        return []
    n = len(marked)
    return [f"{n} marked", "c compares" if n >= 2 else "c needs 2", "space: mark + next"]


def empty_note(search: str, status: str | None):
    """What the empty list says: that there are no runs yet, or that none passes the search
    and the status filter, and the keys that clear them."""
    if not search and not status:
        return NO_RUNS
    if not search:
        what = f"No {status} runs"
    else:
        what = f"No {status + ' ' if status else ''}run matches “{search}”"
    keys = (["Esc clears the search"] if search else []) + (
        ["v cycles the status filter round to all runs"] if status else [])
    return plain(f"{what}: {', '.join(keys)}.")
