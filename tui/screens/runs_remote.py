"""The runs screen's keys that reach runs of this machine and of remotes alike (#37),
mixed into `RunsScreen` (which holds the bindings, the marks and `remotes`, the
tui/remote_runs.py widget): space marks a run of any host, c compares the marked runs
(runs of several machines are read over their remotes' SSH sessions off the UI thread,
tui/remote_reads.py, then shown), f forks the run under the cursor into the new-run
form, a remote's with the form's "run on" choice set to that remote.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from store import Run
from tui.remote_reads import ForkRead, Ref, RunsCompared
from tui.widgets.runs_table import RunsTable, host_of, mark_key, run_key

if TYPE_CHECKING:
    from tui.remote_runs import RemoteRuns


class RunsRemoteKeys:
    """Mark, compare and fork, for runs of any host."""

    remotes: RemoteRuns
    marked: set[int | str]
    """Runs marked with space: an id here, `NAME:ID` a remote's (runs_table.mark_key)."""
    _runs: dict[int, Run]
    selected_id: int | None

    def action_mark(self) -> None:
        run = self.remotes.selected or self._runs.get(self.selected_id or -1)
        if run is None:
            return
        key = mark_key(run)
        self.marked ^= {key}
        table = self.query_one(RunsTable)
        table.show_mark(run, key in self.marked)
        self._show_title()  # says how many are marked
        table.action_cursor_down()

    def action_compare(self) -> None:
        from tui.screens.compare import CompareScreen

        refs = self._marked_refs()
        if len(refs) < 2:
            self.notify("Mark two or more runs with space, then press c (G compares a "
                        "sweep's runs).", severity="warning")
            return
        if all(name is None for name, _ in refs):
            self.app.push_screen(CompareScreen(self.store, [i for _, i in refs]))
            return
        self.notify(f"Reading {len(refs)} runs from their machines to compare them…")
        self.remotes.compare(refs)  # then on_runs_compared

    def _marked_refs(self) -> list[Ref]:
        """The marked runs still listed, this machine's first (by id), then each remote's."""
        listed = {mark_key(r) for h in self.remotes.hosts.values() for r in h.runs}
        local = sorted(k for k in self.marked if isinstance(k, int) and k in self._runs)
        remote = sorted((k for k in self.marked if isinstance(k, str) and k in listed),
                        key=lambda k: (k.rpartition(":")[0], int(k.rpartition(":")[2])))
        return [(None, i) for i in local] + [
            (k.rpartition(":")[0], int(k.rpartition(":")[2])) for k in remote]

    def on_runs_compared(self, msg: RunsCompared) -> None:
        from tui.screens.compare import CompareScreen

        if self.app.screen is self:  # not over another screen
            self.app.push_screen(CompareScreen(self.store, [], read=msg.read))

    async def action_fork(self) -> None:
        there = self.remotes.selected
        if there is not None:  # read whole first: a listed run has no config
            self.remotes.read_for_fork(there)
            return
        run = self._runs.get(self.selected_id or -1)
        if run is not None:
            await self._fork(run)

    async def on_fork_read(self, msg: ForkRead) -> None:
        if self.remotes.selected_key == run_key(msg.run):  # still under the cursor
            await self._fork(msg.run)

    async def _fork(self, run: Run) -> None:
        """The new-run form with `run`'s config; a remote's run is its remote's to start
        (its parent is a run of that machine: the form's title says so)."""
        from engine.core.errors import HubtuneError
        from engine.runs.lifecycle import fork_config

        try:
            cfg = fork_config(run)
        except HubtuneError as exc:
            self.notify(f"Run {run.id}'s config no longer loads: {exc}", severity="error")
            return
        remote = host_of(run)
        if remote is None:
            await self.app.new_run(config=cfg, parent_id=run.id)
        else:
            await self.app.new_run(config=cfg, run_on=remote, forked_from=run_key(run))
            _note_remote_data(self, cfg, remote)


def _note_remote_data(screen, cfg, remote: str) -> None:
    """Say so when the fork's data file is a path on the remote that this machine lacks:
    the form reads it here (and a run started there copies it there from here)."""
    from engine.core.config import is_hub_data

    path = cfg.data.train
    if path and not is_hub_data(path) and not cfg.resolve(path).is_file():
        screen.app.notify(f"The data file of that run is on {remote}; pick a copy on this "
                          "machine in the form (it is sent there once).", severity="warning")
