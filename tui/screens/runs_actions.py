"""What the runs screen's keys do to the run under the cursor: resume (R), delete (x),
the playground (p), export (E), tags (t) and notes (n), and its sweep (G compares its
runs; g, which lists them in the screen's search box, asks `sweep_run` which it is).

A plain object the screen makes and forwards its `action_*` methods to (Textual binds
actions to the app, the screen and the focused widget only). It reads the screen's state
through what it is given, never through the screen's attributes. Starting, resuming and
deleting leave the UI thread (`HubtuneApp.act_on_run`); other machines' runs are the
remote's to resume (tui/remote_runs.py) and the other keys leave them be.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.screen import Screen

from store import Run, RunStore
from tui.formatting import cut
from tui.screens.confirm import ConfirmScreen
from tui.screens.edit import edit_notes, edit_tags

if TYPE_CHECKING:
    from tui.remote_runs import RemoteRuns


class RunActions:
    """Resume, delete, try, export, tag, note and the sweep of the run under the cursor."""

    def __init__(self, screen: Screen, store: RunStore, remotes: RemoteRuns,
                 current: Callable[[], Run | None], wake: Callable[[], None],
                 deleted: Callable[[int], None]) -> None:
        self.screen = screen
        """The runs screen: toasts, the dialogs pushed over it, and the app."""
        self.store = store
        self.remotes = remotes
        """Other machines' runs; a remote's run under the cursor is resumed there."""
        self.current = current
        """The run of this machine under the cursor, or None (having said why)."""
        self.wake = wake
        """Has the poll thread read the store now, to show what an action changed."""
        self.deleted = deleted
        """Called with a run's id once it is deleted."""

    def resume(self) -> None:
        from engine.launch.resume import resume_run

        if self.remotes.selected is not None:  # a run of another machine: resumed there
            return self.remotes.act(self.remotes.selected, "resume")
        run = self.current()
        if run is None:
            return
        if run.status == "completed":  # the engine's sentence names the CLI's fork
            self.screen.notify(f"Run {run.id} already completed; press f to fork it and "
                               "train more.", severity="warning")
            return

        def act(store) -> str:  # on a thread: the relaunch must not freeze the screen
            point = resume_run(store, run.id)
            return f"Resuming run {run.id} from {point.path.name}."

        self.screen.app.act_on_run(act, self.wake)

    def delete(self) -> None:
        from engine.runs.lifecycle import check_deletable

        run = self.current()
        if run is None:
            return

        def act(store) -> str:  # another process may have resumed or deleted it since
            store.delete_run(run.id)
            return f"Deleted run {run.id}."

        def delete() -> None:
            self.screen.app.act_on_run(act, lambda: self.deleted(run.id))

        confirm(self.screen, run, check_deletable, f"Delete run {run.id} "
                f"({cut(run.name, 60)}) with its metrics and files?", delete)

    def playground(self) -> None:
        from tui.screens.playground import PlaygroundScreen

        run = self._completed("the playground needs a completed run")
        if run is not None:
            self.screen.app.push_screen(PlaygroundScreen(run))

    def export(self) -> None:
        from tui.screens.export import ExportScreen

        run = self._completed("only a completed run can be exported")
        if run is not None:
            self.screen.app.push_screen(ExportScreen(run))

    def _completed(self, why: str):
        """The run under the cursor when it completed; else None (with `why` said when
        there is a run)."""
        run = self.current()
        if run is not None and run.status != "completed":
            self.screen.notify(f"Run #{run.id} is {run.status}; {why}.", severity="warning")
            return None
        return run

    def edit_tags(self) -> None:
        edit_tags(self.screen, self.current(), self.wake)

    def edit_notes(self) -> None:
        edit_notes(self.screen, self.current(), self.wake)

    def compare_sweep(self) -> None:
        """Compare every run of the selected run's sweep, best first."""
        from engine.runs.sweep import rank_sweep
        from tui.screens.compare import CompareScreen

        run = self.sweep_run()
        if run is None:
            return
        ranked = rank_sweep(self.store.list_runs(sweep=run.sweep_id, limit=None))
        if len(ranked) < 2:
            self.screen.notify(f"Sweep {run.sweep_id} has one run; nothing to compare it "
                               "with.", severity="warning")
            return
        best = ranked[0].run.id if ranked[0].rank == 1 else None
        self.screen.app.push_screen(CompareScreen(
            self.store, [p.run.id for p in ranked], best=best, sweep_id=run.sweep_id,
            title=f"Sweep {run.sweep_id} ({len(ranked)} runs, best first)"))

    def sweep_run(self) -> Run | None:
        """The selected run if it is part of a sweep; else None, having said so."""
        run = self.current()
        if run is not None and not run.sweep_id:
            self.screen.notify(f"Run {run.id} is not part of a sweep (`hubtune sweep CONFIG "
                               "--grid KEY=V1,V2` queues one).", severity="warning")
            return None
        return run


def confirm(screen: Screen, run: Run, check, question: str, act) -> None:
    """`check` that `run` allows the action (else say why), ask `question`, then `act`."""
    from engine.core.errors import HubtuneError

    try:
        check(run)
    except HubtuneError as exc:
        screen.notify(str(exc), severity="warning")
        return
    screen.app.push_screen(ConfirmScreen(question), lambda yes: act() if yes else None)
