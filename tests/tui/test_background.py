"""Background work, one way (tui/background.py): a thread worker that fails is shown once,
as one toast, and the runs poll comes back after a failure instead of freezing; starting,
resuming and deleting a run happen off the UI thread."""

from __future__ import annotations

import threading

import pytest
from textual.widgets import DataTable

from store import RunStore
from tests.support.pilot_wait import wait_for
from tests.support.seed import seed_runs
from tui.app import make_app
from tui.background import failure_sentence


def _toasts(app) -> list[str]:
    return [n.message for n in app._notifications]


def test_failure_sentences_keep_ours_and_name_the_rest():
    from engine.core.errors import HubtuneError
    from store import StoreError

    assert failure_sentence(HubtuneError("No such run 9."), "x") == "No such run 9."
    assert failure_sentence(StoreError("The database is locked."), "x") == \
        "The database is locked."
    assert failure_sentence(KeyError("col"), "reading the runs") == \
        "Internal error while reading the runs (KeyError: 'col')."


@pytest.mark.slow
async def test_a_runs_poll_that_fails_says_so_once_and_comes_back(store, monkeypatch):
    """The poll thread raising used to end it silently: the table froze for good."""
    import tui.runs_filter as runs_filter
    import tui.screens.runs as runs_screen

    real, calls = runs_filter.list_runs, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) <= 3:  # three failures in a row: one toast, not three
            raise RuntimeError("disk hiccup")
        return real(*args, **kwargs)

    monkeypatch.setattr(runs_filter, "list_runs", flaky)
    monkeypatch.setattr(runs_screen, "POLL_INTERVAL_S", 0.05)
    ids = seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == len(ids), timeout=30)
        shown = [t for t in _toasts(app) if "disk hiccup" in t]
        assert shown == ["Internal error while reading the runs (RuntimeError: disk hiccup)."]


@pytest.mark.slow
async def test_delete_and_resume_run_off_the_ui_thread_and_say_why_they_fail(store,
                                                                             monkeypatch):
    ids = seed_runs(store)
    threads: list[str] = []
    real_delete = RunStore.delete_run

    def delete_run(self, run_id):
        threads.append(threading.current_thread().name)
        return real_delete(self, run_id)

    monkeypatch.setattr(RunStore, "delete_run", delete_run)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("x")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: table.row_count == 2)
        assert threads and threads[0] != threading.main_thread().name
        await wait_for(pilot, lambda: f"Deleted run {ids[-1]}." in _toasts(app))
        # the newest left has no checkpoint: the engine's sentence, as one toast
        await pilot.press("R")
        await wait_for(pilot, lambda: any("no checkpoint" in t for t in _toasts(app)))
        assert sum("no checkpoint" in t for t in _toasts(app)) == 1
