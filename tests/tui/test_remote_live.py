"""A remote run's panel is live (#37): its curves, step, ETA and its box's GPU line
follow new metric points over SSH (tui/remote_detail.py), a dropped connection is
opened again without losing or doubling a point, and this machine's run keeps its own
panel meanwhile. The remote is this machine over a real sshd on loopback
(tests/support/sshd.py); its run is recorded as running by this test process, which
writes its metric points as a worker would."""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from store import RunStore
from store.remotes import Remote, add_remote
from tests.support.pilot_wait import select_run, wait_for
from tests.support.sshd import kill_clients
from tui.app import make_app
from tui.widgets.chart import LineChart

pytestmark = pytest.mark.slow  # a whole TUI session polling a remote over ssh

HUBTUNE = str(Path(sys.executable).parent / "hubtune")


@pytest.fixture
def box(sshd, tmp_path, monkeypatch, store):
    monkeypatch.setenv("HUBTUNE_SSH_COMMAND", sshd.ssh_command)
    home = tmp_path / "remote-home"
    add_remote(store, Remote("box", "127.0.0.1", sshd.user, sshd.port, HUBTUNE, str(home)))
    return home


def running_run(home: Path) -> tuple[RunStore, int]:
    """A run on the remote that this process trains (claimed with its pid)."""
    there = RunStore(home / "hubtune.db")
    run_id = there.create_run({"model": {"id": "m"}, "head": {"task": "text-classification"}},
                              name="far-live", model_id="far/model",
                              task="text-classification", dataset="d")
    there.claim(run_id, there.get_run(run_id).lease, pid=os.getpid(),
                host=socket.gethostname(), env={})
    log(there, run_id, 1, 5)
    there.log_metrics(run_id, [(5, 0.1, "val_accuracy", 0.5, time.time()),
                               (0, 0.0, "total_steps", 100.0, time.time())])
    return there, run_id


def log(there: RunStore, run_id: int, first: int, last: int) -> None:
    there.log_metrics(run_id, [(s, s / 50, "loss", 1.0 / s, time.time())
                               for s in range(first, last + 1)])
    there.heartbeat(run_id)


async def test_a_remote_runs_panel_follows_its_points_through_a_dropped_connection(
        box, store, sshd):
    there, far = running_run(box)
    near = store.create_run({"model": {"id": "l"}}, name="near-run", model_id="l",
                            task="text-classification", dataset="d")
    key = f"box:{far}"
    app = make_app(store=store)
    async with app.run_test(size=(150, 44)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.holds(key) and table.holds(near), timeout=30,
                       what="the remote's run listed")
        await select_run(pilot, near)
        table.move_to(key)
        summary = app.screen.query_one("#detail-summary", Static)
        loss = app.screen.query_one("#loss-curve", LineChart)

        def shown() -> str:
            return str(summary.render())

        def steps() -> list[int]:
            return list(loss.series[0].steps) if loss.series else []

        await wait_for(pilot, lambda: "step 5/100" in shown() and steps() == [1, 2, 3, 4, 5],
                       timeout=30, what="the remote run's curve and step")
        assert "on remote box" in shown() and "ETA" in shown()
        assert "on box: no GPU" in shown()  # this box has CPU slots only
        val = app.screen.query_one("#val-curve", LineChart)
        assert val.series and val.series[0].steps == [5]

        log(there, far, 6, 8)
        await wait_for(pilot, lambda: steps()[-1:] == [8] and "step 8/100" in shown(),
                       timeout=15, what="new points of the remote run")

        # The connection drops; points logged meanwhile arrive once it is opened again.
        assert kill_clients(sshd) >= 1
        log(there, far, 9, 12)
        await wait_for(pilot, lambda: steps()[-1:] == [12], timeout=60,
                       what="the points logged while the connection was down")
        assert steps() == list(range(1, 13))  # none lost, none twice

        # This machine's run still has its own panel.
        await select_run(pilot, near)
        await wait_for(pilot, lambda: "near-run" in shown() and "on remote" not in shown(),
                       what="this machine's run in the panel")
    there.close()


async def test_the_new_run_form_queues_a_run_on_the_remote_chosen(box, store, tiny_bert,
                                                                  sentiment_csv):
    from textual.widgets import Button, Select

    from tui.widgets.run_on import HERE, RunOn

    there = RunStore(box / "hubtune.db")
    there.set_queue_paused(True)  # recorded there, never trained
    app = make_app(store=store)
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        await app.switch_mode("new")
        await pilot.pause()
        screen = app.screen
        choice = screen.query_one("#f-run-on", Select)
        run_on = screen.query_one(RunOn)
        await wait_for(pilot, lambda: any(name == "box" and label.startswith("box · ") and
                                          label.endswith("slots free")
                                          for label, name in run_on.offered),
                       timeout=30, what="box offered with its free slots")
        assert run_on.display
        assert choice.value == HERE  # this machine unless another is chosen
        for fid, value in (("f-name", "queued-on-box"), ("f-model", str(tiny_bert)),
                           ("f-train-file", str(sentiment_csv)), ("f-max-length", "32")):
            screen.query_one(f"#{fid}").value = value
        choice.value = "box"
        queue = screen.query_one("#queue", Button)
        await wait_for(pilot, lambda: not queue.disabled, timeout=30)
        queue.scroll_visible(animate=False)
        await pilot.pause()
        await pilot.click("#queue")
        await wait_for(pilot, lambda: there.count_runs() == 1, timeout=30,
                       what="the run recorded on box")
        (run,) = there.list_runs()
        assert run.name == "queued-on-box" and run.waiting
        assert store.count_runs() == 0  # nothing started on this machine
        copied = Path(run.config["data"]["train"])
        assert box in copied.parents and copied.read_bytes() == sentiment_csv.read_bytes()
        await wait_for(pilot, lambda: any(f"Run {run.id} queued on box" in n.message
                                          for n in app._notifications))
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")
    there.close()
