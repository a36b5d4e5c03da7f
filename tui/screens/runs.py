"""The runs screen: every recorded run, live, with the selected one in detail.

A thread worker polls the store a few times a second on its own connection
and posts messages; the screen only renders them, so a slow disk never
freezes the UI and runs started elsewhere (another TUI, the CLI) show up
on their own.

The screen holds the list, its search, sort and filters, the cursor and the marks; what
the keys do to runs is in three plain objects it forwards its actions to (Textual binds
actions to the app, the screen and the focused widget only): the queue's keys in
tui/screens/runs_queue.py (its state reaches the table and the subtitle with each
refresh, tui/queue_view.py), the run under the cursor's in tui/screens/runs_actions.py,
and mark, compare and fork, which reach other machines' runs too, in
tui/screens/runs_remote.py. What the list shows (search, sort, status) is a
tui/runs_filter.py value; other machines' runs are polled by tui/remote_runs.py and merged
into the list.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from textual import on
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static
from textual.worker import get_current_worker

from store import Run, RunStore
from tui.background import background
from tui.messages import QueueMoved, RunDetailRefreshed, RunsRefreshed
from tui.queue_view import QueueView, queue_title, split_search
from tui.remote_reads import ForkRead, RunsCompared
from tui.remote_runs import RemoteRuns, detail_of
from tui.runs_filter import NO_RUNS, RunsFilter
from tui.safe_text import printable
from tui.screens.runs_actions import RunActions
from tui.screens.runs_queue import PALETTE, QUEUE_BINDINGS, QueueActions
from tui.screens.runs_remote import AnyHostActions
from tui.widgets.footer import KeysFooter
from tui.widgets.run_detail import RunDetail
from tui.widgets.runs_table import RunsTable, run_key

POLL_INTERVAL_S = 0.5
"""How often the poll thread looks at the store (tui.run_watcher decides what to re-read)."""


class RunsScreen(Screen):
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
        self.filter = RunsFilter()
        """The search, sort and status filter; read whole by the polling threads."""
        self._wake = threading.Event()
        """Set to make the polling thread look now rather than at its next tick."""
        self._kick = threading.Event()
        """Set to have the polling thread start the queued runs that fit."""
        self.queue = QueueView()
        """The queue as the last refresh read it: paused or not, places of waiting runs."""
        self._runs: dict[int, Run] = {}
        """The runs listed, by id, as the last refresh read them."""
        self.marked: set[int | str] = set()
        """Runs marked with space, for Compare: ids here, `NAME:ID` remotes'
        (runs_table.mark_key); `any_host` changes this set in place."""
        self._pending_select: int | None = None
        """A run to put the cursor on once the list holds it (a run just launched)."""
        self._best: set[int] = set()
        """The best run of each sweep listed."""
        self.remotes = RemoteRuns(store.path, lambda: (self.filter.search, self.filter.status))
        """Other machines' runs (tui/remote_runs.py)."""
        self.queue_actions = QueueActions(self, store, self.remotes, self._current,
                                          self._wake.set, self._kick_queue)
        """The queue's keys: stop, reorder, pause (tui/screens/runs_queue.py)."""
        self.run_actions = RunActions(self, store, self.remotes, self._current,
                                      self._wake.set, self._forget)
        """The keys for the run under the cursor (tui/screens/runs_actions.py)."""
        self.any_host = AnyHostActions(self, store, self.remotes, self.marked,
                                       lambda: self._runs, lambda: self.selected_id,
                                       self._show_title)
        """Mark, compare and fork, for runs of any host (tui/screens/runs_remote.py)."""

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
            # The list as the screen asks for it now: its filter is read each time.
            watcher = RunWatcher(store, self.post_message, lambda s: self.filter.read(s))
            watcher.watch(lambda: worker.is_cancelled, lambda: self.selected_id,
                          self._wake, self._kick, POLL_INTERVAL_S)
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
        runs = self.remotes.merged(list(self._runs.values()), self.filter.sort)
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

    def _current(self) -> Run | None:
        """The run under the cursor, as the last refresh listed it; None for a remote's
        (saying that only s and R reach it), which the other keys leave be."""
        if self.remotes.refuse_local_only():
            return None
        return self._runs.get(self.selected_id or -1)

    def _forget(self, run_id: int) -> None:
        """`run_id` is deleted: off the cursor; slots it had been given go to the next."""
        if self.selected_id == run_id:
            self.selected_id = None
        self._kick_queue()

    def _kick_queue(self) -> None:
        """Have the poll thread start what fits now."""
        self._kick.set()
        self._wake.set()

    # -- the list: search, sort and filters ------------------------------------------

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
        self.filter = replace(self.filter, search=event.value.strip())
        self._show_view()

    @on(Input.Submitted, "#run-search")
    def _search_submitted(self) -> None:
        self.query_one(DataTable).focus()

    def action_show_sweep(self) -> None:
        """List the selected run's sweep only; again, every run."""
        box = self.query_one("#run-search", Input)
        if split_search(box.value)[1] is not None:
            self.action_clear_search()
        elif (run := self.run_actions.sweep_run()) is not None:
            box.value = f"sweep:{printable(run.sweep_id)}"  # an Input draws text as is
            box.remove_class("-hidden")

    def action_refresh(self) -> None:
        self._wake.set()
        self.remotes.wake()

    def action_cycle_sort(self) -> None:
        self.filter = self.filter.next_sort()
        self._show_view()

    def action_cycle_status(self) -> None:
        self.filter = self.filter.next_status()
        self._show_view()

    def _show_view(self) -> None:
        """Say how the list is sorted and filtered, and refresh it."""
        self._show_title()
        self.query_one("#runs-empty", Static).update(self.filter.empty_note())
        self._wake.set()
        self.remotes.wake()

    def _show_title(self) -> None:
        """The subtitle: the sort and filters, the runs waiting and a paused queue."""
        self.sub_title = " · ".join(["runs", *self.filter.title_parts(),
                                     *queue_title(self.queue, self.filter.search),
                                     *mark_note(self.marked), *self.remotes.title_parts()])

    # -- the run panel and the command palette --------------------------------------

    def action_run_view(self, view: str) -> None:
        """d / e: the run panel's details or errors view; the same key again, its curves."""
        self.query_one(RunDetail).toggle_view(view)

    def action_run_scroll(self, action: str) -> None:
        """PgUp / PgDn: scroll the run panel's details or errors; in its curves view the
        keys go on to the runs table, which pages."""
        if not self.query_one(RunDetail).scroll_view(action):
            raise SkipAction()

    def palette_commands(self) -> list[tuple[str, str, object]]:
        """(title, help, callback) for the app's command palette (HubtuneApp)."""
        return [(title, help_text, getattr(self, f"action_{action}"))
                for title, help_text, action in PALETTE]

    # -- forwarded to the queue's, the run's and any host's actions ----------------

    def action_stop_run(self) -> None:
        self.queue_actions.stop()

    def action_queue_top(self) -> None:
        self.queue_actions.move(lambda position: 1)

    def action_queue_up(self) -> None:
        self.queue_actions.move(lambda position: max(1, position - 1))

    def action_queue_down(self) -> None:
        self.queue_actions.move(lambda position: position + 1)

    def action_toggle_queue(self) -> None:
        self.queue_actions.toggle_paused()

    def on_queue_moved(self, msg: QueueMoved) -> None:
        self.queue_actions.moved(msg)

    def action_resume(self) -> None:
        self.run_actions.resume()

    def action_delete_run(self) -> None:
        self.run_actions.delete()

    def action_playground(self) -> None:
        self.run_actions.playground()

    def action_export_run(self) -> None:
        self.run_actions.export()

    def action_edit_tags(self) -> None:
        self.run_actions.edit_tags()

    def action_edit_notes(self) -> None:
        self.run_actions.edit_notes()

    def action_compare_sweep(self) -> None:
        self.run_actions.compare_sweep()

    def action_mark(self) -> None:
        self.any_host.mark()

    def action_compare(self) -> None:
        self.any_host.compare()

    def on_runs_compared(self, msg: RunsCompared) -> None:
        self.any_host.compared(msg)

    async def action_fork(self) -> None:
        await self.any_host.fork()

    async def on_fork_read(self, msg: ForkRead) -> None:
        await self.any_host.fork_read(msg)


def mark_note(marked: set[int | str]) -> list[str]:
    """The subtitle's part on marked runs: how many, and what space and c do (a toast
    would cover the compare screen that follows)."""
    if not marked:
        return []
    n = len(marked)
    return [f"{n} marked", "c compares" if n >= 2 else "c needs 2", "space: mark + next"]
