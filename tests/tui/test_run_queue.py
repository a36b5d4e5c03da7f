"""The run queue and sweeps on the runs screen (#19), driven by keys through Pilot over
a real store and the real scheduler. No worker starts: the one CPU slot is held by a run
whose worker is "elsewhere", or the queue is paused. NVML is faked at its boundary so a
GPU machine sees the same one-slot CPU box.
"""

from __future__ import annotations

import socket
import subprocess
import time

import pytest
from textual.widgets import Button, DataTable, Static

from engine.cluster.gpus import GpuMonitor
from tests.support.fake_nvml import FakeNvml
from tests.support.pilot_wait import select_run, wait_for
from tests.support.seed import SWEEP_ID, seed_queue, seed_runs
from tui.app import make_app


def cpu_box() -> GpuMonitor:
    return GpuMonitor(FakeNvml([], driver=False))


@pytest.fixture(autouse=True)
def one_cpu_slot(monkeypatch):
    """The watcher (tui.gpu) and start_run (engine.launch.worker) see one CPU slot."""
    monkeypatch.setattr("tui.gpu.GpuMonitor", cpu_box)
    monkeypatch.setattr("engine.launch.start.GpuMonitor", cpu_box)
    monkeypatch.delenv("HUBTUNE_CPU_SLOTS", raising=False)


def status(table: DataTable, run_id: int) -> str:
    """The run's status cell, or "" while the table does not list it."""
    from textual.widgets.data_table import CellDoesNotExist

    try:
        return str(table.get_cell(str(run_id), "status"))
    except CellDoesNotExist:
        return ""


def notified(app, text: str) -> bool:
    return any(text in n.message for n in app._notifications)


async def test_queued_runs_show_their_place_and_the_slot_they_wait_for(store):
    ids = seed_queue(store)
    w0, w1, w2 = ids["waiting"]
    holder = ids["holder"][0]
    app = make_app(store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: status(table, w2) == "#3 · cpu0")
        assert [status(table, w) for w in (w0, w1)] == ["#1 · cpu0", "#2 · cpu0"]
        assert "3 queued" in app.screen.sub_title and "paused" not in app.screen.sub_title
        app.screen.select_run(w1)
        summary = app.screen.query_one("#detail-summary", Static)
        await wait_for(pilot, lambda: "queued #2" in str(summary.render()))
        text = " ".join(str(summary.render()).split())
        assert f"queued #2 · waits for 1 run ahead of it · cpu0 held by run {holder}" in text
        # The status cell is no wider than "interrupted": the first six columns still fit
        # 80 columns.
        assert table.columns["status"].content_width <= len("interrupted")
    assert all(store.get_run(w).pid is None for w in ids["waiting"])


async def test_stop_takes_a_waiting_run_out_of_the_queue_without_a_worker(store):
    ids = seed_queue(store, paused=True)
    w0, w1, _ = ids["waiting"]
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: status(table, w0) == "#1 · paused")
        await select_run(pilot, w0)
        await pilot.press("s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        question = str(app.screen.query_one("#confirm-question").render())
        assert "from the queue" in question
        await pilot.press("y")
        await wait_for(pilot, lambda: store.get_run(w0).status == "stopped")
        await wait_for(pilot, lambda: status(table, w1) == "#1 · paused")
        assert notified(app, f"Removed run {w0} from the queue.")
    run = store.get_run(w0)
    assert run.pid is None and run.started_utc is None and w0 not in store.waiting_ids()
    assert any("Removed from the queue" in e.message for e in store.events(w0))


async def test_top_and_up_down_reorder_the_queue(store):
    ids = seed_queue(store, paused=True)
    w0, w1, w2 = ids["waiting"]
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: status(table, w2) == "#3 · paused")
        await select_run(pilot, w2)
        await pilot.press("T")
        await wait_for(pilot, lambda: store.waiting_ids() == [w2, w0, w1])
        await wait_for(pilot, lambda: status(table, w2) == "#1 · paused")
        assert status(table, w1) == "#3 · paused"
        await pilot.press("shift+down")
        await wait_for(pilot, lambda: store.waiting_ids() == [w0, w2, w1])
        await pilot.press("J")
        await wait_for(pilot, lambda: store.waiting_ids() == [w0, w1, w2])
        await pilot.press("K")
        await wait_for(pilot, lambda: store.waiting_ids() == [w0, w2, w1])
        await pilot.press("shift+up")
        await wait_for(pilot, lambda: store.waiting_ids() == [w2, w0, w1])
        assert notified(app, f"Run {w2} is #1 of 3 in the queue.")
        # A run that is not waiting cannot be moved; the queue is left as it was.
        await select_run(pilot, ids["sweep"][0])
        await pilot.press("T")
        await wait_for(pilot, lambda: notified(app, "only a queued run that has not started"))
        assert store.waiting_ids() == [w2, w0, w1]
    assert all(store.get_run(w).pid is None for w in ids["waiting"])


async def test_pause_and_resume_flip_the_store_setting(store):
    ids = seed_queue(store)  # the CPU slot stays held: resuming starts nothing
    w0 = ids["waiting"][0]
    app = make_app(store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: status(table, w0) == "#1 · cpu0")
        await pilot.press("P")
        await wait_for(pilot, lambda: store.queue_paused())
        await wait_for(pilot, lambda: "queue paused" in app.screen.sub_title)
        await wait_for(pilot, lambda: status(table, w0) == "#1 · paused")
        await pilot.press("P")
        await wait_for(pilot, lambda: not store.queue_paused())
        await wait_for(pilot, lambda: "queue paused" not in app.screen.sub_title)
        await wait_for(pilot, lambda: status(table, w0) == "#1 · cpu0")
    assert store.waiting_ids() == ids["waiting"]


async def test_the_queue_button_records_a_queued_run(store, tiny_bert, sentiment_csv):
    store.set_queue_paused(True)  # so no worker starts
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        await app.switch_mode("new")
        await pilot.pause()
        screen = app.screen
        for fid, value in (("f-name", "queued-from-tui"), ("f-model", str(tiny_bert)),
                           ("f-train-file", str(sentiment_csv)), ("f-max-length", "32")):
            screen.query_one(f"#{fid}").value = value
        queue = screen.query_one("#queue", Button)
        await wait_for(pilot, lambda: not queue.disabled, timeout=30)
        queue.scroll_visible(animate=False)  # under the form's fields
        await pilot.pause()
        await pilot.click("#queue")
        await wait_for(pilot, lambda: store.count_runs() == 1)
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")
        (run,) = store.list_runs()
        assert run.name == "queued-from-tui" and run.waiting and run.pid is None
        assert store.waiting_ids() == [run.id]
        assert notified(app, f"Run {run.id} is queued at #1 of 1; the queue is paused")
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: status(table, run.id) == "#1 · paused")


async def test_a_sweeps_runs_are_listed_together_its_best_starred_and_compared(store):
    ids = seed_queue(store, paused=True)
    worst, best, failed = ids["sweep"]
    seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 10)
        await wait_for(pilot, lambda: str(table.get_cell(str(best), "id")) == f"★{best}")
        assert str(table.get_cell(str(worst), "id")) == str(worst)
        await select_run(pilot, worst)
        await pilot.press("g")
        await wait_for(pilot, lambda: sorted(int(k.value) for k in table.rows)
                       == sorted(ids["sweep"]))
        assert f"sweep {SWEEP_ID}" in app.screen.sub_title
        summary = app.screen.query_one("#detail-summary", Static)
        await wait_for(pilot, lambda: f"sweep {SWEEP_ID} · 3 runs" in str(summary.render()))
        await pilot.press("G")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CompareScreen")
        cmp_table = app.screen.query_one("#compare-table", DataTable)
        columns = [str(c.label) for c in cmp_table.ordered_columns[1:]]
        assert [c.split("#")[1].split()[0] for c in columns] == [str(best), str(worst),
                                                                 str(failed)]
        assert columns[0].startswith("★")
        rows = {str(cmp_table.get_row_at(i)[0]): cmp_table.get_row_at(i)
                for i in range(cmp_table.row_count)}
        assert [str(v) for v in rows["train.learning_rate"][1:]] == ["0.0003", "0.0001", "0.001"]
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")
        await pilot.press("g")  # again: every run
        await wait_for(pilot, lambda: table.row_count == 10)
        await select_run(pilot, ids["holder"][0])
        await pilot.press("G")
        await wait_for(pilot, lambda: notified(app, "is not part of a sweep"))


def test_the_watcher_moves_the_queue_only_after_a_reap(store, monkeypatch):
    """A dead worker's slot goes to the next waiting run (its launch recorded, not run);
    a poll that reaps nothing does not look at the queue."""
    from tui.run_watcher import RunWatcher

    spawned = []
    monkeypatch.setattr("engine.launch.start.spawn_worker", lambda store, run_id, *a, **k:
                        spawned.append(run_id))
    ids = seed_queue(store)
    dead = subprocess.Popen(["true"])
    dead.wait()
    holder = ids["holder"][0]
    store.db.execute("UPDATE runs SET host = ?, pid = ?, heartbeat_unix = ? WHERE id = ?",
                     [socket.gethostname(), dead.pid, time.time() - 3600, holder])
    store.db.conn.commit()
    posted = []
    watcher = RunWatcher(store, posted.append, lambda s: s.list_runs(), monitor=cpu_box())
    assert watcher.reap()
    assert store.get_run(holder).status == "interrupted"
    assert spawned == [ids["waiting"][0]]
    assert [m.started for m in posted] == [[ids["waiting"][0]]]
    kicked = []
    monkeypatch.setattr("engine.launch.start.start_queued", lambda *a, **k: kicked.append(1) or [])
    watcher.reaped_at = 0.0
    assert not watcher.reap() and kicked == []


def test_a_queued_run_names_the_gpus_it_waits_for(store):
    """On a two-GPU box, one GPU held by a run and one busy with another user's job."""
    from tests.support.fake_nvml import GIB, FakeGpu
    from tui.queue_view import read_queue

    gpus = GpuMonitor(FakeNvml([FakeGpu(f"GPU-{n:08x}-1111-2222-3333-444455556666",
                                        used=(20 if n else 1) * GIB, pids=(4242,) * n)
                                for n in range(2)]))
    holder = store.create_run({"a": 1}, name="holder")
    store.assign_slots(lambda state: [(holder, ("gpu0",))])
    first, second = (store.create_run({"i": i}, queue_slots=1) for i in range(2))
    view = read_queue(store, gpus)
    assert not view.paused and set(view.spots) == {first, second}
    assert [view.spots[r].cell for r in (first, second)] == ["#1 · gpu0/1", "#2 · gpu0/1"]
    assert view.spots[first].detail == (
        f"queued #1 · waits for 1 free GPU (0 free now) · gpu0 held by run {holder}, "
        "gpu1 busy (another user's process)")
    store.set_queue_paused(True)
    assert read_queue(store, gpus).spots[second].cell == "#2 · paused"


def test_the_search_box_names_a_sweep():
    from tui.queue_view import split_search

    assert split_search("sweep:ab12cd34") == (None, "ab12cd34")
    assert split_search("tweets  Sweep:ab12 lr") == ("tweets   lr", "ab12")
    assert split_search("tweets lr") == ("tweets lr", None)
    assert split_search("sweep:") == ("sweep:", None)
    assert split_search("mysweep:x") == ("mysweep:x", None)
