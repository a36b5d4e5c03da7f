"""The runs screen's keys for the run queue and for sweeps, mixed into `RunsScreen`
(which holds the bindings, the store and the poll thread).

Stop dequeues a run that waits (engine.runs.lifecycle.stop_run); a remote's run is
stopped by its own machine (tui/remote_runs.py). T, shift+up/down (K/J) reorder the queue and P pauses or resumes it, all through the store as `hubtune queue`
does. Starting what fits after a resume or a move is left to the poll thread
(`RunWatcher.kick_queue`): spawning workers never runs on the UI thread. g lists the
selected run's sweep (`sweep:ID` in the search box), G compares all of its runs.
"""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input

from store import Run, StoreError
from tui.formatting import cut
from tui.messages import QueueMoved
from tui.queue_view import split_search
from tui.safe_text import printable

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


class RunsQueueKeys:
    """Queue and sweep actions of the runs screen; what they change shows on the next
    poll, which the screen is woken for."""

    def action_run_view(self, view: str) -> None:
        """d / e: the run panel's details or errors view; the same key again, its curves."""
        from tui.widgets.run_detail import RunDetail

        self.query_one(RunDetail).toggle_view(view)  # type: ignore[attr-defined]

    def action_run_scroll(self, action: str) -> None:
        """PgUp / PgDn: scroll the run panel's details or errors; in its curves view the
        keys go on to the runs table, which pages."""
        from textual.actions import SkipAction

        from tui.widgets.run_detail import RunDetail

        if not self.query_one(RunDetail).scroll_view(action):  # type: ignore[attr-defined]
            raise SkipAction()

    def palette_commands(self) -> list[tuple[str, str, object]]:
        """(title, help, callback) for the app's command palette (HubtuneApp)."""
        return [(title, help_text, getattr(self, f"action_{action}"))
                for title, help_text, action in PALETTE]

    def action_stop_run(self) -> None:
        from engine.runs.lifecycle import check_stoppable

        there = self.remotes.selected  # type: ignore[attr-defined]
        if there is not None:  # a run of another machine (tui/remote_runs.py): stopped there
            self._confirm(there, check_stoppable, f"Stop run {there.id} ({cut(there.name, 60)}) "
                          f"on {there.remote}?", lambda: self.remotes.act(there, "stop"))
            return
        run = self._current()
        if run is None:
            return
        label = f"run {run.id} ({cut(run.name, 60)})"
        question = (f"Remove {label} from the queue?" if run.waiting
                    else f"Stop {label}?")
        self._confirm(run, check_stoppable, question, lambda: self._stop(run.id))

    def _stop(self, run_id: int) -> None:
        """Stop or dequeue the run as it is now (it may have started since the question)."""
        from engine.core.errors import HubtuneError
        from engine.runs.lifecycle import stop_run

        try:
            said = stop_run(self.store, self.store.get_run(run_id))
        except (HubtuneError, StoreError) as exc:
            self.notify(str(exc), severity="warning")
            return
        if said.startswith("Asked"):
            said = said.removesuffix(".") + "; it checkpoints and ends shortly."
        self.notify(said)
        self._wake.set()

    def action_queue_top(self) -> None:
        self._move(lambda position: 1)

    def action_queue_up(self) -> None:
        self._move(lambda position: max(1, position - 1))

    def action_queue_down(self) -> None:
        self._move(lambda position: position + 1)

    def _move(self, to) -> None:
        """Move the selected waiting run from its position to `to(position)`."""
        run = self._current()
        if run is None:
            return
        order = self.store.waiting_ids()
        if run.id not in order:
            self.notify(f"Run {run.id} is not waiting in the queue ({run.status}); only a "
                        "queued run that has not started can be moved.", severity="warning")
            return
        position = order.index(run.id) + 1
        try:
            got = self.store.move_in_queue(run.id, to(position))
        except StoreError as exc:  # it started (or was removed) meanwhile
            self.notify(str(exc), severity="warning")
            return
        self.notify(f"Run {run.id} is #{got} of {len(order)} in the queue.")
        self._kick_queue()  # a small run moved ahead of a big one may fit now

    def action_toggle_queue(self) -> None:
        paused = not self.store.queue_paused()
        self.store.set_queue_paused(paused)
        if paused:
            self.notify("The queue is paused: nothing queued starts until you press P "
                        "again; running runs go on.")
        else:
            self.notify("The queue is running again: queued runs start as slots free up.")
            self._kick_queue()
        self._wake.set()

    def _kick_queue(self) -> None:
        """Have the poll thread start what fits now."""
        self._kick.set()
        self._wake.set()

    def on_queue_moved(self, msg: QueueMoved) -> None:
        if msg.error:
            self.notify(msg.error, severity="warning")
        elif msg.started:
            runs = ", ".join(map(str, msg.started))
            self.notify(f"Started run{'s' if len(msg.started) > 1 else ''} {runs} from the "
                        "queue.")

    def action_show_sweep(self) -> None:
        """List the selected run's sweep only; again, every run."""
        box = self.query_one("#run-search", Input)
        if split_search(box.value)[1] is not None:
            self.action_clear_search()
            return
        run = self._sweep_run()
        if run is not None:
            box.value = f"sweep:{printable(run.sweep_id)}"  # an Input draws text as is
            box.remove_class("-hidden")

    def action_export_run(self) -> None:
        from tui.screens.export import ExportScreen

        run = self._current()
        if run is None:
            return
        if run.status != "completed":
            self.notify(f"Run #{run.id} is {run.status}; only a completed run can be "
                        "exported.", severity="warning")
            return
        self.app.push_screen(ExportScreen(run))

    def action_compare_sweep(self) -> None:
        """Compare every run of the selected run's sweep, best first."""
        from engine.runs.sweep import rank_sweep
        from tui.screens.compare import CompareScreen

        run = self._sweep_run()
        if run is None:
            return
        ranked = rank_sweep(self.store.list_runs(sweep=run.sweep_id, limit=None))
        if len(ranked) < 2:
            self.notify(f"Sweep {run.sweep_id} has one run; nothing to compare it with.",
                        severity="warning")
            return
        best = ranked[0].run.id if ranked[0].rank == 1 else None
        self.app.push_screen(CompareScreen(
            self.store, [p.run.id for p in ranked], best=best, sweep_id=run.sweep_id,
            title=f"Sweep {run.sweep_id} ({len(ranked)} runs, best first)"))

    def _sweep_run(self) -> Run | None:
        """The selected run if it is part of a sweep; else None, having said so."""
        run = self._current()
        if run is not None and not run.sweep_id:
            self.notify(f"Run {run.id} is not part of a sweep (`hubtune sweep CONFIG --grid "
                        "KEY=V1,V2` queues one).", severity="warning")
            return None
        return run
