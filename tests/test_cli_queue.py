"""`hubtune train --queue`, `hubtune queue ...`, `hubtune sweep` and `runs compare --sweep`
(issue #19), in-process. The queue is paused in the fast tests so no worker starts; one
slow test lets two real workers run through the queue with nobody watching."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from engine.runs.queue import machine_slots
from tests.support.cli_runner import hubtune, ok, write_run_config


@pytest.fixture
def config(tmp_path: Path, sentiment_csv: Path) -> Path:
    return write_run_config(tmp_path, sentiment_csv, "q")


def queue_json() -> dict:
    return json.loads(ok("queue", "ls", "--json").stdout)


def test_queue_order_reorder_pause_and_dequeue(config):
    ok("queue", "pause")
    ids = [int(ok("train", str(config), "--queue").stdout) for _ in range(3)]
    a, b, c = ids
    shown = queue_json()
    assert shown["paused"] is True
    assert [(r["position"], r["id"]) for r in shown["runs"]] == [(1, a), (2, b), (3, c)]
    assert all(r["waiting_for"].startswith("the queue to be resumed") for r in shown["runs"])

    assert "position 1" in ok("queue", "top", str(c)).stdout
    assert [r["id"] for r in queue_json()["runs"]] == [c, a, b]
    ok("queue", "mv", str(c), "3")
    assert [r["id"] for r in queue_json()["runs"]] == [a, b, c]

    assert ok("runs", "stop", str(b)).stdout.strip() == f"Removed run {b} from the queue."
    assert [r["id"] for r in queue_json()["runs"]] == [a, c]
    brief = {r["id"]: r for r in json.loads(ok("runs", "ls", "--json").stdout)}
    assert brief[b]["status"] == "stopped" and brief[a]["status"] == "queued"

    table = ok("queue", "ls").stdout
    assert "paused" in table and f"{a:>4}  queued" in table
    slots = json.loads(ok("queue", "slots", "--json").stdout)
    # The machine's own slots: cpu0 here, gpu0 and up on a GPU box.
    assert [(s["slot"], s["kind"]) for s in slots] == [(s.name, s.kind) for s in machine_slots()]
    assert slots[0]["held_by"] == [] and slots[0]["kind"] in ("cpu", "gpu")
    assert slots[0]["slot"] in ok("queue", "slots").stdout

    missing = hubtune("queue", "mv", "999", "1")
    assert missing.returncode == 1 and "There is no run 999" in missing.stderr
    stopped = hubtune("queue", "top", str(b))
    assert stopped.returncode == 1
    assert stopped.stderr.strip() == (f"Error: Run {b} is not waiting in the queue (it is "
                                      "stopped); `hubtune queue ls` lists the runs that are.")


def test_sweep_queues_a_run_per_point_and_compare_ranks_them(config, store):
    ok("queue", "pause")
    out = json.loads(ok("sweep", str(config), "--grid", "train.learning_rate=1e-4,3e-4",
                        "--grid", "train.batch_size=8,16", "--json").stdout)
    sweep_id, points = out["sweep_id"], out["runs"]
    assert len(points) == 4 and points[0]["overrides"] == [
        "train.learning_rate=1e-4", "train.batch_size=8"]
    ids = [p["id"] for p in points]
    listed = json.loads(ok("runs", "ls", "--json", "--sweep", sweep_id).stdout)
    assert sorted(r["id"] for r in listed) == ids and {r["sweep_id"] for r in listed} == {sweep_id}
    shown = json.loads(ok("runs", "show", str(ids[3]), "--json").stdout)
    assert shown["sweep_id"] == sweep_id and shown["name"] == "q-4"
    assert shown["config"]["train"]["learning_rate"] == 3e-4
    assert shown["config"]["train"]["batch_size"] == 16
    assert [r["id"] for r in queue_json()["runs"]] == ids

    for run_id, acc in zip(ids[:3], (0.6, 0.9, 0.7), strict=True):
        store.finish(run_id, "completed", summary={"watched_metric": "accuracy",
                                                   "best_accuracy": acc, "steps": 5})
    ranked = json.loads(ok("runs", "compare", "--sweep", sweep_id, "--json").stdout)
    assert ranked["metric"] == "accuracy"
    assert [(p["rank"], p["id"]) for p in ranked["points"]] == [
        (1, ids[1]), (2, ids[2]), (3, ids[0]), (None, ids[3])]
    assert ranked["points"][0]["config"] == {"train.batch_size": 16,
                                             "train.learning_rate": 1e-4}
    table = ok("runs", "compare", "--sweep", sweep_id).stdout
    assert "ranked by accuracy" in table and "queued" in table

    drawn = json.loads(ok("sweep", str(config), "--random", "3", "--range",
                          "train.learning_rate=1e-5:1e-3:log", "--seed", "1", "--json").stdout)
    assert len(drawn["runs"]) == 3 and drawn["sweep_id"] != sweep_id


def test_bad_sweeps_and_unknown_sweeps_are_one_sentence(config):
    ok("queue", "pause")
    bad = hubtune("sweep", str(config), "--grid", "train.learning_rate=1e-4,-1")
    assert bad.returncode == 1 and "learning_rate" in bad.stderr
    assert bad.stderr.count("\n") == 1
    assert json.loads(ok("runs", "ls", "--json").stdout) == []  # nothing half-queued
    unknown = hubtune("runs", "compare", "--sweep", "nope")
    assert unknown.returncode == 1 and "There is no sweep 'nope'" in unknown.stderr
    nothing = hubtune("runs", "compare")
    assert nothing.returncode == 1 and "two or more run ids, or --sweep ID" in nothing.stderr


@pytest.mark.slow
def test_the_queue_moves_on_with_no_one_watching(tiny_config, store):
    """One slot (CPU or GPU), two queued runs: the first starts at once, and its worker starts
    the second when it ends. Nothing else runs in between (slow: two real workers)."""
    slots = machine_slots()
    if len(slots) != 1:
        pytest.skip("needs a machine with one slot (one CPU slot, or one GPU)")
    slot = slots[0].name  # cpu0 here, gpu0 on a one-GPU box
    first = int(ok("train", str(tiny_config), "--queue", "--set", "train.epochs=1").stdout)
    second = int(ok("train", str(tiny_config), "--queue", "--set", "train.epochs=1").stdout)
    assert store.get_run(first).devices == (slot,)
    assert store.get_run(second).waiting
    deadline = time.monotonic() + 280
    while time.monotonic() < deadline:
        runs = [store.get_run(i) for i in (first, second)]
        if all(r.status in ("completed", "failed") for r in runs):
            break
        time.sleep(0.5)
    a, b = runs
    assert (a.status, b.status) == ("completed", "completed"), (a.error, b.error)
    assert b.devices == (slot,) and b.started_utc >= a.finished_utc
    assert b.env.get("cuda_visible_devices") == a.env.get("cuda_visible_devices")
