"""The runs screen's queue keys; its bindings that the footer has no room for, and the
command-palette entries for them.

`QueueActions` is a plain object the screen makes and forwards its `action_*` methods to
(Textual binds actions to the app, the screen and the focused widget only). Stop dequeues
a run that waits (engine.runs.lifecycle.stop_run); a remote's run is stopped by its own
machine (tui/remote_runs.py). T, shift+up/down (K/J) reorder the queue and P pauses or
resumes it, all through the store as `hubtune queue` does. Starting what fits after a
resume or a move is left to the poll thread (`RunWatcher.kick_queue`): spawning workers
never runs on the UI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.binding import Binding
from textual.screen import Screen

from store import Run, RunStore, StoreError
from tui.formatting import cut
from tui.messages import QueueMoved
from tui.screens.runs_actions import confirm

if TYPE_CHECKING:
    from tui.remote_runs import RemoteRuns

QUEUE_BINDINGS = (
    # Not in the footer: it has no room left at 120 columns; the help screen lists them.
    Binding("T", "queue_top", "Queue top", show=False),
    Binding("shift+up,K", "queue_up", "Queue up", show=False),
    Binding("shift+down,J", "queue_down", "Queue down", show=False),
    Binding("P", "toggle_queue", "Pause queue", show=False),
    Binding("g", "show_sweep", "Sweep", show=False),
    Binding("G", "compare_sweep", "Compare sweep", show=False),
    Binding("E", "export_run", "Export", show=False),  # the dialog: tui/screens/export.py
    # The run panel's views; its border names these keys.
    Binding("d", "run_view('details')", "Details", show=False),
    Binding("e", "run_view('errors')", "Errors", show=False),
    # Ahead of the table's own paging while a view is open; in the curves they page it.
    Binding("pageup", "run_scroll('page_up')", "Scroll panel up", show=False, priority=True),
    Binding("pagedown", "run_scroll('page_down')", "Scroll panel", show=False, priority=True),
)


PALETTE = (
    # (title, what it does, action): the runs screen's keys that the footer has no room
    # for, offered in the command palette (Ctrl+P) as well as the help screen.
    ("Queue: move to the top", "Start the selected queued run next (T)", "queue_top"),
    ("Queue: move up", "Move the selected queued run one place up (Shift+Up, K)",
     "queue_up"),
    ("Queue: move down", "Move the selected queued run one place down (Shift+Down, J)",
     "queue_down"),
    ("Queue: pause or resume", "Nothing queued starts while paused; running runs go on "
     "(P)", "toggle_queue"),
    ("Queue: remove the selected run", "Take a queued run out of the queue, or stop a "
     "running one (s)", "stop_run"),
    ("Sweep: list its runs", "Only the selected run's sweep; again, every run (g)",
     "show_sweep"),
    ("Sweep: compare its runs", "Every run of the selected run's sweep, best first (G)",
     "compare_sweep"),
    ("Runs: export", "The selected completed run's model to a folder, ONNX or the hub (E)",
     "export_run"),
    ("Runs: resume", "Resume the selected stopped or interrupted run from its last "
     "checkpoint (R)", "resume"),
    ("Runs: sort", "Newest first, name, status, model, task, best metric (o)",
     "cycle_sort"),
    ("Runs: status filter", "Only running / completed / failed / ... runs, or all (v)",
     "cycle_status"),
    ("Runs: edit tags", "The selected run's tags, comma-separated (t)", "edit_tags"),
    ("Runs: edit note", "The selected run's note (n)", "edit_notes"),
)



class QueueActions:
    """Stop or dequeue, reorder and pause the queue; what they change shows on the next
    poll, which the screen is woken for."""

    def __init__(self, screen: Screen, store: RunStore, remotes: RemoteRuns,
                 current: Callable[[], Run | None], wake: Callable[[], None],
                 kick: Callable[[], None]) -> None:
        self.screen = screen
        """The runs screen: toasts, and the question asked before a stop."""
        self.store = store
        self.remotes = remotes
        """Other machines' runs; a remote's run under the cursor is stopped there."""
        self.current = current
        """The run of this machine under the cursor, or None (having said why)."""
        self.wake = wake
        """Has the poll thread read the store now, to show what an action changed."""
        self.kick = kick
        """Has the poll thread start the queued runs that fit now."""

    def stop(self) -> None:
        from engine.runs.lifecycle import check_stoppable

        there = self.remotes.selected
        if there is not None:  # a run of another machine (tui/remote_runs.py): stopped there
            confirm(self.screen, there, check_stoppable, f"Stop run {there.id} "
                    f"({cut(there.name, 60)}) on {there.remote}?",
                    lambda: self.remotes.act(there, "stop"))
            return
        run = self.current()
        if run is None:
            return
        label = f"run {run.id} ({cut(run.name, 60)})"
        question = (f"Remove {label} from the queue?" if run.waiting
                    else f"Stop {label}?")
        confirm(self.screen, run, check_stoppable, question, lambda: self._stop(run.id))

    def _stop(self, run_id: int) -> None:
        """Stop or dequeue the run as it is now (it may have started since the question)."""
        from engine.core.errors import HubtuneError
        from engine.runs.lifecycle import stop_run

        try:
            said = stop_run(self.store, self.store.get_run(run_id))
        except (HubtuneError, StoreError) as exc:
            self.screen.notify(str(exc), severity="warning")
            return
        if said.startswith("Asked"):
            said = said.removesuffix(".") + "; it checkpoints and ends shortly."
        self.screen.notify(said)
        self.wake()

    def move(self, to: Callable[[int], int]) -> None:
        """Move the selected waiting run from its position to `to(position)`."""
        run = self.current()
        if run is None:
            return
        order = self.store.waiting_ids()
        if run.id not in order:
            self.screen.notify(f"Run {run.id} is not waiting in the queue ({run.status}); "
                               "only a queued run that has not started can be moved.",
                               severity="warning")
            return
        position = order.index(run.id) + 1
        try:
            got = self.store.move_in_queue(run.id, to(position))
        except StoreError as exc:  # it started (or was removed) meanwhile
            self.screen.notify(str(exc), severity="warning")
            return
        self.screen.notify(f"Run {run.id} is #{got} of {len(order)} in the queue.")
        self.kick()  # a small run moved ahead of a big one may fit now

    def toggle_paused(self) -> None:
        paused = not self.store.queue_paused()
        self.store.set_queue_paused(paused)
        if paused:
            self.screen.notify("The queue is paused: nothing queued starts until you press "
                               "P again; running runs go on.")
        else:
            self.screen.notify("The queue is running again: queued runs start as slots "
                               "free up.")
            self.kick()
        self.wake()

    def moved(self, msg: QueueMoved) -> None:
        """Say what the poll thread's start of the queue did."""
        if msg.error:
            self.screen.notify(msg.error, severity="warning")
        elif msg.started:
            runs = ", ".join(map(str, msg.started))
            self.screen.notify(f"Started run{'s' if len(msg.started) > 1 else ''} {runs} "
                               "from the queue.")
