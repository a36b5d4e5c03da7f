"""Watched runs in the TUI (tui/watch_badges.py, #35): a run whose watch rules found
something carries a flag and its count in the runs table's status cell and in the
panel's headline, and the terminal bell rings for a new finding when the run's config
asks (`train.watch.bell: true`)."""

from __future__ import annotations

import os

import pytest

from store import Run, RunStore
from tests.support.pilot_wait import select_run, wait_for
from tui.app import make_app
from tui.watch_badges import BADGE, Bell, read_watched

SPIKE = ("Loss spike at step 40: 9.1, 7.0x the median 1.3 of the last 20 readings "
         "(train.watch.loss_spike: over 5x).")


def _run(store: RunStore, name: str, bell: bool) -> int:
    run_id = store.create_run({"train": {"watch": {"bell": bell}}}, name=name)
    store.claim(run_id, store.get_run(run_id).lease, pid=os.getpid(), host="here", env={})
    return run_id


def test_counts_only_watch_findings_and_the_bell_only_for_new_ones_of_runs_asking(store):
    loud, quiet = _run(store, "loud", True), _run(store, "quiet", False)
    store.add_event(loud, SPIKE, "warning")
    store.add_event(loud, "Loading the model", "info")  # not a finding
    store.add_event(quiet, "Disk almost full (train.watch. is no key here)", "info")
    runs = [store.get_run(loud), store.get_run(quiet)]
    assert read_watched(store, runs) == {loud: 1}
    bell = Bell()
    assert not bell.rings(runs, {loud: 1})  # there before the TUI looked
    assert not bell.rings(runs, {loud: 1, quiet: 3})  # the quiet run does not ask
    assert bell.rings(runs, {loud: 2, quiet: 3})
    assert not bell.rings(runs, {loud: 2, quiet: 3})


@pytest.mark.slow  # a whole TUI session
async def test_a_new_finding_flags_the_run_and_rings_the_bell(store):
    loud = _run(store, "loud", True)
    quiet = _run(store, "quiet", False)
    app = make_app(store=store)
    rung = []
    app.bell = lambda: rung.append(True)  # the terminal's bell cannot be heard from here
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one("RunsTable")
        await wait_for(pilot, lambda: table.row_count == 2)
        await select_run(pilot, loud)
        other = RunStore(store.path)  # the run's worker, in another process
        other.add_event(loud, SPIKE, "warning")
        other.add_event(quiet, SPIKE, "warning")
        other.close()

        def status(run_id: int) -> str:
            return table.get_cell(str(run_id), "status").plain

        await wait_for(pilot, lambda: status(loud).endswith(f"{BADGE}1")
                       and status(quiet).endswith(f"{BADGE}1"), what="the badges")
        assert status(loud).startswith("running")
        summary = app.screen.query_one("#detail-summary")
        await wait_for(pilot, lambda: f"{BADGE}1 watch" in str(summary.render()),
                       what="the panel's badge")
        await wait_for(pilot, lambda: rung == [True], what="the bell")  # loud's; quiet's not


def test_the_status_cell_without_findings_is_as_before(store):
    from tui.widgets.runs_table import row_cells

    run = store.get_run(_run(store, "plain", False))
    assert isinstance(run, Run)
    assert BADGE not in row_cells(run, False)["status"].plain
    assert row_cells(run, False, watched=3)["status"].plain.endswith(f"{BADGE}3")
