"""The runs screen's keys that reach runs of this machine and of remotes alike (#37):
space marks a run of any host, c compares the marked runs (runs of several machines are
read over their remotes' SSH sessions off the UI thread, tui/remote_reads.py, then
shown), f forks the run under the cursor into the new-run form, a remote's with the
form's "run on" choice set to that remote.

`AnyHostActions` is a plain object the screen makes and forwards its `action_*` methods
and the remote reads' messages to (Textual binds actions to the app, the screen and the
focused widget only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual.screen import Screen

from store import Run, RunStore
from tui.remote_reads import ForkRead, Ref, RunsCompared
from tui.widgets.runs_table import RunsTable, host_of, mark_key, run_key

if TYPE_CHECKING:
    from tui.remote_runs import RemoteRuns


class AnyHostActions:
    """Mark, compare and fork, for runs of any host."""

    def __init__(self, screen: Screen, store: RunStore, remotes: RemoteRuns,
                 marked: set[int | str], listed: Callable[[], dict[int, Run]],
                 selected_id: Callable[[], int | None],
                 show_title: Callable[[], None]) -> None:
        self.screen = screen
        """The runs screen: its table, toasts, the compare screen pushed over it, the app."""
        self.store = store
        self.remotes = remotes
        """Other machines' runs, their reads for compare and fork (tui/remote_reads.py)."""
        self.marked = marked
        """The screen's marks, changed here in place: an id this machine's, `NAME:ID` a
        remote's run (runs_table.mark_key)."""
        self.listed = listed
        """This machine's runs as the last refresh listed them, by id."""
        self.selected_id = selected_id
        """The run of this machine under the cursor (None: none, or a remote's)."""
        self.show_title = show_title
        """Redraws the screen's subtitle, which says how many runs are marked."""

    def mark(self) -> None:
        run = self.remotes.selected or self.listed().get(self.selected_id() or -1)
        if run is None:
            return
        key = mark_key(run)
        self.marked ^= {key}  # in place: the screen shows the same set
        table = self.screen.query_one(RunsTable)
        table.show_mark(run, key in self.marked)
        self.show_title()  # says how many are marked
        table.action_cursor_down()

    def compare(self) -> None:
        from tui.screens.compare import CompareScreen

        refs = self._marked_refs()
        if len(refs) < 2:
            self.screen.notify("Mark two or more runs with space, then press c (G compares "
                               "a sweep's runs).", severity="warning")
            return
        if all(name is None for name, _ in refs):
            self.screen.app.push_screen(CompareScreen(self.store, [i for _, i in refs]))
            return
        self.screen.notify(f"Reading {len(refs)} runs from their machines to compare them…")
        self.remotes.compare(refs)  # then compared

    def _marked_refs(self) -> list[Ref]:
        """The marked runs still listed, this machine's first (by id), then each remote's."""
        listed = {mark_key(r) for h in self.remotes.hosts.values() for r in h.runs}
        local = sorted(k for k in self.marked if isinstance(k, int) and k in self.listed())
        remote = sorted((k for k in self.marked if isinstance(k, str) and k in listed),
                        key=lambda k: (k.rpartition(":")[0], int(k.rpartition(":")[2])))
        return [(None, i) for i in local] + [
            (k.rpartition(":")[0], int(k.rpartition(":")[2])) for k in remote]

    def compared(self, msg: RunsCompared) -> None:
        """The marked runs of several machines are read: compare them."""
        from tui.screens.compare import CompareScreen

        if self.screen.app.screen is self.screen:  # not over another screen
            self.screen.app.push_screen(CompareScreen(self.store, [], read=msg.read))

    async def fork(self) -> None:
        there = self.remotes.selected
        if there is not None:  # read whole first: a listed run has no config
            self.remotes.read_for_fork(there)
            return
        run = self.listed().get(self.selected_id() or -1)
        if run is not None:
            await self._fork(run)

    async def fork_read(self, msg: ForkRead) -> None:
        """A remote's run is read whole for f: fork it if it is still under the cursor."""
        if self.remotes.selected_key == run_key(msg.run):
            await self._fork(msg.run)

    async def _fork(self, run: Run) -> None:
        """The new-run form with `run`'s config; a remote's run is its remote's to start
        (its parent is a run of that machine: the form's title says so)."""
        from engine.core.errors import HubtuneError
        from engine.runs.lifecycle import fork_config

        try:
            cfg = fork_config(run)
        except HubtuneError as exc:
            self.screen.notify(f"Run {run.id}'s config no longer loads: {exc}",
                               severity="error")
            return
        remote = host_of(run)
        app = self.screen.app
        if remote is None:
            await app.new_run(config=cfg, parent_id=run.id)
        else:
            await app.new_run(config=cfg, run_on=remote, forked_from=run_key(run))
            _note_remote_data(self.screen, cfg, remote)


def _note_remote_data(screen, cfg, remote: str) -> None:
    """Say so when the fork's data file is a path on the remote that this machine lacks:
    the form reads it here (and a run started there copies it there from here)."""
    from engine.core.config import is_hub_data

    path = cfg.data.train
    if path and not is_hub_data(path) and not cfg.resolve(path).is_file():
        screen.app.notify(f"The data file of that run is on {remote}; pick a copy on this "
                          "machine in the form (it is sent there once).", severity="warning")
