"""A live terminal from the first step: `runs follow` of a queued run says its place and
what it waits for within a second, and each change, until it starts; then the step
counter from the first step, with the ETA the TUI shows. Over a real store, the run
moved along as the queue and a worker would move it (no worker starts: the queue is
paused and the run is given its slot by hand)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from engine.core.events import STEP_METRIC
from store import RunStore
from tui.cli.train import follow


class Follower:
    """`follow` in a thread of its own (with its own store connection), its output
    gathered from capsys as it comes."""

    def __init__(self, db, run_id: int, capsys) -> None:
        self.capsys, self.out, self.status = capsys, "", None
        self.thread = threading.Thread(target=self._run, args=(db, run_id), daemon=True)
        self.started = time.monotonic()
        self.thread.start()

    def _run(self, db, run_id: int) -> None:
        store = RunStore(db)
        try:
            self.status = follow(store, run_id)
        finally:
            store.close()

    def wait_for(self, text: str, timeout: float = 10.0) -> float:
        """Seconds from the start until `text` was printed."""
        deadline = time.monotonic() + timeout
        while text not in self.out:
            assert time.monotonic() < deadline, (text, self.out)
            time.sleep(0.02)
            self.out += self.capsys.readouterr().out
        return time.monotonic() - self.started


def test_follow_says_a_queued_runs_place_then_counts_steps_with_an_eta(store, capsys):
    store.set_queue_paused(True)
    ahead = store.create_run({"name": "ahead"}, name="ahead", queue_slots=1)
    run_id = store.create_run({"name": "behind"}, name="behind", queue_slots=1)
    follower = Follower(store.path, run_id, capsys)
    try:
        took = follower.wait_for(f"Run {run_id} queued #2 · waits for the queue to be "
                                 "resumed (`hubtune queue resume`)")
        assert took < 1.0, took
        store.move_in_queue(run_id, 1)  # a change: it is next now
        follower.wait_for(f"Run {run_id} queued #1 ·")
        store.dequeue(ahead)
        # The queue gives it its slot and its worker claims it.
        store.assign_slots(lambda state: [(run_id, ("cpu0",))])
        store.claim(run_id, store.get_run(run_id).lease, pid=os.getpid(), host="elsewhere",
                    env={})
        follower.wait_for(f"Run {run_id} left the queue: it is running on cpu0.")
        store.db.execute("UPDATE runs SET started_utc = ? WHERE id = ?",
                         [_ago(20), run_id])
        store.db.conn.commit()
        # The first step, before the first logged one (log_every steps in).
        store.log_metrics(run_id, [(0, 0.0, "total_steps", 100.0, 0.0),
                                   (1, 0.01, STEP_METRIC, 1.0, 0.0)])
        follower.wait_for("step 1/100\n")  # no ETA yet: 20 s of loading is not a pace
        store.log_metrics(run_id, [(10, 0.1, "loss", 0.7, 0.0), (10, 0.1, "lr", 1e-4, 0.0),
                                   (10, 0.1, "steps_per_s", 2.0, 0.0)])
        # The pace of the logged interval: 90 steps left at 2 a second.
        follower.wait_for("step 10/100  loss 0.700  lr 1.00e-04  ETA 45s")
        store.finish(run_id, "completed", summary={"watched_metric": "accuracy",
                                                   "final_accuracy": 0.7})
        follower.thread.join(10)
    finally:
        if follower.thread.is_alive():  # never leave it following: end the run
            store.finish(run_id, "stopped")
            follower.thread.join(10)
    assert follower.status == "completed"
    follower.out += capsys.readouterr().out
    lines = follower.out.splitlines()
    assert sum(line.startswith(f"Run {run_id} queued #2") for line in lines) == 1  # changes only
    assert f"Run {run_id} completed: accuracy 0.700" in follower.out


def _ago(seconds: float) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat()


@pytest.mark.slow
async def test_the_panel_counts_from_the_first_step_with_an_eta(store):
    from textual.widgets import Static

    from tests.support.pilot_wait import wait_for
    from tui.app import make_app

    run_id = store.create_run({"name": "fresh"}, name="fresh", task="text-classification")
    store.claim(run_id, store.get_run(run_id).lease, pid=os.getpid(), host="elsewhere", env={})
    store.db.execute("UPDATE runs SET started_utc = ? WHERE id = ?", [_ago(30), run_id])
    store.db.conn.commit()
    store.log_metrics(run_id, [(0, 0.0, "total_steps", 200.0, 0.0),
                               (1, 0.01, STEP_METRIC, 1.0, 0.0)])
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        summary = app.screen.query_one("#detail-summary", Static)
        await wait_for(pilot, lambda: "step 1/200" in str(summary.render()))
        assert "ETA " not in str(summary.render())  # 30 s of loading is not a pace
        store.log_metrics(run_id, [(20, 0.2, "loss", 0.5, 0.0),
                                   (20, 0.2, "steps_per_s", 4.0, 0.0)])
        # The logged interval's pace: 180 steps left at 4 a second.
        await wait_for(pilot, lambda: "ETA 45s" in str(summary.render()))
