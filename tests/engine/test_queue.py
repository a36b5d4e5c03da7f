"""The run queue (issue #19): order, slots, reorder, pause, reclaim, races, sweeps.

Real store rows and the real scheduler, in-process and without workers (the one test
that starts workers is in tests/test_cli_queue.py). NVML is the one thing faked, at the
boundary `GpuMonitor(nvml=...)` reads it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.cluster.gpus import GpuMonitor
from engine.core.errors import ConfigError, HubtuneError
from engine.runs.lifecycle import stop_run
from engine.runs.queue import (
    QueueSettings,
    assign_waiting,
    check_fits,
    cuda_environment,
    queue_entries,
    read_slots,
    take_slots,
)
from engine.runs.sweep import parse_grid, parse_range, rank_sweep, sweep_points
from tests.support.fake_nvml import GIB, FakeGpu, FakeNvml

REPO = Path(__file__).resolve().parents[2]


def cpu_box() -> GpuMonitor:
    return GpuMonitor(FakeNvml([], driver=False))


def gpu_box(*gpus: FakeGpu) -> GpuMonitor:
    return GpuMonitor(FakeNvml(list(gpus)))


def gpu(n: int, **kw) -> FakeGpu:
    return FakeGpu(f"GPU-{n:08x}-1111-2222-3333-444455556666", **kw)


def queued(store, n: int = 1, slots: int = 1) -> list[int]:
    return [store.create_run({"i": i}, queue_slots=slots) for i in range(n)]


def assign(store, monitor=None, slots: int = 1, **kw) -> dict[int, tuple[str, ...]]:
    got = assign_waiting(store, monitor=monitor or cpu_box(),
                         settings=QueueSettings(cpu_slots=slots), **kw)
    return {a.run_id: a.devices for a in got}


def test_one_cpu_slot_runs_the_queue_one_at_a_time_in_order(store):
    a, b, c = queued(store, 3)
    assert assign(store) == {a: ("cpu0",)}
    assert assign(store) == {}  # a holds the only slot, launching or running
    store.claim(a, store.get_run(a).lease, pid=os.getpid(), host="h", env={})
    assert assign(store) == {}
    store.finish(a, "failed", error="boom")  # any outcome frees the slot
    assert assign(store) == {b: ("cpu0",)}
    store.finish(b, "completed")
    assert assign(store) == {c: ("cpu0",)}
    assert store.get_run(c).devices == ("cpu0",) and not store.get_run(c).waiting


def test_several_slots_are_filled_with_distinct_slots(store):
    a, b, c = queued(store, 3)
    got = assign(store, slots=2)
    assert got == {a: ("cpu0",), b: ("cpu1",)}
    assert store.get_run(c).waiting


def test_a_plain_start_takes_its_slot_and_the_queue_waits_for_it(store):
    plain = store.create_run({})
    assert take_slots(store, plain, 1, monitor=cpu_box()) == ("cpu0",)
    (waiting,) = queued(store)
    assert assign(store) == {}
    # a second plain start still starts at once, sharing the slot it must
    other = store.create_run({})
    assert take_slots(store, other, 1, monitor=cpu_box()) == ("cpu0",)
    store.finish(plain, "completed")
    assert assign(store) == {}
    store.finish(other, "stopped")
    assert assign(store) == {waiting: ("cpu0",)}


def test_top_and_mv_reorder_what_starts_next(store):
    a, b, c, d = queued(store, 4)
    assert store.move_in_queue(c, 1) == 1
    assert store.waiting_ids() == [c, a, b, d]
    assert store.move_in_queue(c, 99) == 4  # past the end: last
    assert store.move_in_queue(b, 2) == 2
    assert store.waiting_ids() == [a, b, d, c]
    store.move_in_queue(d, 1)
    assert assign(store) == {d: ("cpu0",)}
    with pytest.raises(Exception, match="not waiting in the queue"):
        store.move_in_queue(d, 1)  # it holds a slot now


def test_pause_starts_nothing_until_resumed(store):
    (a,) = queued(store)
    store.set_queue_paused(True)
    assert store.queue_paused()
    assert assign(store) == {}
    entries = queue_entries(store, read_slots(store, cpu_box(), QueueSettings()))
    assert [e.waiting_for for e in entries] == ["the queue to be resumed (hubtune queue resume)"]
    # a plain start is not held back by a pause
    plain = store.create_run({})
    assert take_slots(store, plain, 1, monitor=cpu_box()) == ("cpu0",)
    store.finish(plain, "completed")
    store.set_queue_paused(False)
    assert assign(store) == {a: ("cpu0",)}


def test_queue_ls_says_what_each_run_waits_for(store):
    a, b, c = queued(store, 3)
    assign(store)
    entries = queue_entries(store, read_slots(store, cpu_box(), QueueSettings()))
    assert [(e.position, e.run_id, e.status) for e in entries] == [
        (None, a, "starting"), (1, b, "queued"), (2, c, "queued")]
    assert entries[1].waiting_for == "1 free CPU slot (0 free now)"
    assert entries[2].waiting_for == "1 run ahead of it"


def test_strict_order_a_big_run_is_not_jumped(store):
    box = gpu_box(gpu(0), gpu(1))
    plain = store.create_run({})
    take_slots(store, plain, 1, monitor=box, environ={})
    big, small = store.create_run({}, queue_slots=2), store.create_run({}, queue_slots=1)
    assert assign(store, box) == {}  # one GPU free: the 2-GPU run waits, and so does the next
    store.finish(plain, "completed")
    assert assign(store, box) == {big: ("gpu0", "gpu1")}
    assert store.get_run(small).waiting


def test_a_gpu_busy_with_another_users_process_is_not_given(store):
    box = gpu_box(gpu(0, used=30 * GIB, pids=(4242,)), gpu(1, util=95), gpu(2))
    a, b = queued(store, 2)
    assert assign(store, box) == {a: ("gpu2",)}
    slots = {s.name: s for s in read_slots(store, box, QueueSettings())}
    assert slots["gpu0"].busy and slots["gpu0"].reading.processes == (4242,)
    assert slots["gpu1"].busy and slots["gpu2"].held_by == (a,)
    assert cuda_environment(("gpu2",)) == {"CUDA_VISIBLE_DEVICES": "2",
                                           "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert cuda_environment(("cpu0",)) == {}
    # the thresholds are settings: at 40 GiB allowed, GPU 0 counts free
    got = assign_waiting(store, monitor=box, settings=QueueSettings(busy_mib=40 * 1024))
    assert [(x.run_id, x.devices) for x in got] == [(b, ("gpu0",))]


def test_the_ending_runs_own_gpu_memory_is_not_another_users(store):
    box = gpu_box(gpu(0, used=20 * GIB))
    (a,) = queued(store)
    assert assign(store, box) == {}
    assert assign(store, box, releasing=("gpu0",)) == {a: ("gpu0",)}


def test_a_plain_start_holds_the_gpus_cuda_visible_devices_names(store):
    box = gpu_box(gpu(0), gpu(1), gpu(2))
    run = store.create_run({})
    assert take_slots(store, run, 1, monitor=box, environ={"CUDA_VISIBLE_DEVICES": "2"}) \
        == ("gpu2",)
    (a,) = queued(store)
    assert assign(store, box) == {a: ("gpu0",)}


def test_more_slots_than_the_machine_has_are_refused():
    with pytest.raises(HubtuneError, match="needs 3 GPUs but this machine has 2"):
        check_fits(3, gpu_box(gpu(0), gpu(1)))
    check_fits(1, cpu_box(), QueueSettings(cpu_slots=1))
    with pytest.raises(HubtuneError, match="HUBTUNE_CPU_SLOTS must be a whole number"):
        QueueSettings.from_env({"HUBTUNE_CPU_SLOTS": "zero"})
    assert QueueSettings.from_env({"HUBTUNE_CPU_SLOTS": "3"}).cpu_slots == 3


def test_a_sigkilled_workers_slot_is_reclaimed(store):
    a, b = queued(store, 2)
    assign(store)
    worker = subprocess.Popen(["sleep", "60"])
    store.set_pid(a, worker.pid, store.get_run(a).lease)
    store.claim(a, store.get_run(a).lease, pid=worker.pid, host=socket.gethostname(), env={})
    assert assign(store) == {}
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    store.db.execute("UPDATE runs SET heartbeat_unix = ? WHERE id = ?", [time.time() - 3600, a])
    store.db.conn.commit()
    assert store.reap_interrupted() == [a]
    assert assign(store) == {b: ("cpu0",)}


def test_slots_given_to_a_launch_that_never_happened_go_back(store):
    (a,) = queued(store)
    assign(store)
    assert store.assign_slots(lambda state: [], stale_after_s=3600) == []
    assert store.get_run(a).devices == ("cpu0",)
    store.assign_slots(lambda state: [], stale_after_s=0)  # no worker pid: the launcher died
    assert store.get_run(a).waiting
    assert assign(store) == {a: ("cpu0",)}


def test_stop_on_a_queued_run_dequeues_it(store):
    a, b = queued(store, 2)
    assign(store)
    assert stop_run(store, store.get_run(b)) == f"Removed run {b} from the queue."
    run = store.get_run(b)
    assert run.status == "stopped" and not run.waiting and store.waiting_ids() == []
    # one that got its slot is asked to stop instead (its worker is starting)
    assert stop_run(store, store.get_run(a)) == f"Asked run {a} to stop."
    assert store.stop_requested(a) and store.get_run(a).status == "queued"
    with pytest.raises(HubtuneError, match="only a queued or running run"):
        stop_run(store, store.get_run(b))


def test_resume_of_a_queued_run_leaves_the_queue_columns_clean(store):
    (a,) = queued(store)
    assign(store)
    store.finish(a, "stopped")
    store.requeue(a)
    run = store.get_run(a)
    assert run.devices == () and run.queue_rank is None and not run.waiting


RACER = """
import sys, time
from tests.support.fake_nvml import FakeNvml
from engine.cluster.gpus import GpuMonitor
from engine.runs.queue import QueueSettings, assign_waiting
from store import RunStore
store = RunStore()
mine = [store.create_run({{"racer": {who}}}, queue_slots=1) for _ in range(3)]
while time.time() < {start}:
    time.sleep(0.001)
got = assign_waiting(store, monitor=GpuMonitor(FakeNvml([], driver=False)),
                     settings=QueueSettings(cpu_slots=2))
print([a.run_id for a in got])
"""


def test_racing_enqueues_never_over_commit(store, hubtune_home):
    start = time.time() + 3
    procs = [subprocess.Popen([sys.executable, "-c", RACER.format(who=w, start=start)],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)  # cwd: `tests`
             for w in (1, 2)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    started = [rid for out in outs for rid in json.loads(out)]
    assert len(started) == 2  # exactly the two slots, however the race went
    held = store.queue_state().held
    assert sorted(held) == ["cpu0", "cpu1"] and all(len(v) == 1 for v in held.values())
    assert sorted(r for v in held.values() for r in v) == sorted(started)
    assert len(store.waiting_ids()) == 4


# -- sweeps -------------------------------------------------------------------


def test_grid_expands_to_every_combination():
    grid = [parse_grid("train.learning_rate=1e-4,3e-4"), parse_grid("train.batch_size=8,16,32")]
    points = sweep_points(grid)
    assert len(points) == 6 and len(set(points)) == 6
    assert points[0] == ("train.learning_rate=1e-4", "train.batch_size=8")
    assert points[-1] == ("train.learning_rate=3e-4", "train.batch_size=32")


def test_random_search_is_seeded_and_stays_in_range():
    ranges = [parse_range("train.learning_rate=1e-5:1e-3:log"),
              parse_range("train.batch_size=8:64")]
    grid = [parse_grid("freeze.policy=full,head_only")]
    points = sweep_points(grid, ranges, random_n=20, seed=3)
    assert points == sweep_points(grid, ranges, random_n=20, seed=3)
    assert points != sweep_points(grid, ranges, random_n=20, seed=4)
    lrs = [float(p[1].split("=")[1]) for p in points]
    sizes = [p[2].split("=")[1] for p in points]
    assert all(1e-5 <= lr <= 1e-3 for lr in lrs)
    assert sum(lr < 1e-4 for lr in lrs) >= 5  # log scale: about half below the middle decade
    assert all(s.isdigit() and 8 <= int(s) <= 64 for s in sizes)
    assert {p[0] for p in points} == {"freeze.policy=full", "freeze.policy=head_only"}


@pytest.mark.parametrize("call, message", [
    (lambda: parse_grid("train.batch_size"), "must look like KEY=V1,V2"),
    (lambda: parse_range("lr=1:x"), "must look like KEY=LO:HI"),
    (lambda: parse_range("lr=0:1:log"), "LO must be more than 0"),
    (lambda: sweep_points([], [parse_range("lr=1:2")]), "add --random N"),
    (lambda: sweep_points([]), "A sweep needs --grid"),
    (lambda: sweep_points([parse_grid("a=1,2"), parse_grid("a=3")]), "names a twice"),
    (lambda: sweep_points([parse_grid(f"k{i}=1,2,3,4") for i in range(6)]), "keep it to"),
])
def test_bad_sweeps_are_one_sentence(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def _point(run_id, status, summary):
    return SimpleNamespace(id=run_id, status=status, summary=summary)


def test_sweep_ranking_follows_the_main_metric_and_shows_failures():
    runs = [
        _point(1, "completed", {"watched_metric": "accuracy", "best_accuracy": 0.7,
                                "steps": 10}),
        _point(2, "failed", {}),
        _point(3, "completed", {"watched_metric": "accuracy", "best_accuracy": 0.9,
                                "steps": 4}),
        _point(4, "queued", {}),
        _point(5, "stopped", {"watched_metric": "accuracy", "final_accuracy": 0.8,
                              "steps": 6}),
    ]
    ranked = rank_sweep(runs, {1: 10, 3: 10, 5: 10})
    assert [(p.rank, p.run.id, p.state) for p in ranked] == [
        (1, 3, "early-stopped"), (2, 5, "stopped"), (3, 1, "completed"),
        (None, 2, "failed"), (None, 4, "queued")]
    assert ranked[0].metric == "accuracy" and ranked[0].value == 0.9


def test_a_minimised_metric_ranks_lowest_first():
    runs = [_point(i, "completed", {"watched_metric": "perplexity", "best_perplexity": v})
            for i, v in ((1, 12.0), (2, 8.5), (3, math.nan))]
    assert [p.run.id for p in rank_sweep(runs) if p.rank] == [2, 1]
