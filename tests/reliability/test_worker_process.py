"""The worker as a real detached process: stop, SIGTERM, SIGKILL and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from store import RunStore

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


from tests.support.cli_runner import hubtune  # noqa: E402 - in-process unless env is given


def wait_until(predicate, timeout: float = 240.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def start(config: Path, *sets: str) -> int:
    args = ["train", str(config), "--detach"]
    for s in sets:
        args += ["--set", s]
    result = hubtune(*args)
    assert result.returncode == 0, result.stderr
    return int(result.stdout.strip())


def loss_steps(store: RunStore, run_id: int) -> list[int]:
    return store.series(run_id, "loss").steps


SLOW = ("train.epochs=40", "train.log_every=1", "train.checkpoint_every=5")


def test_stop_request_through_the_store_ends_stopped_with_a_checkpoint(tiny_config):
    store = RunStore()
    run_id = start(tiny_config, *SLOW)
    wait_until(lambda: len(loss_steps(store, run_id)) >= 3, what="training to start")
    assert hubtune("runs", "stop", str(run_id)).returncode == 0
    wait_until(lambda: store.get_run(run_id).status == "stopped", what="the stop")
    assert store.checkpoints(run_id), "a stopped run keeps a checkpoint"
    assert store.get_run(run_id).summary["steps"] < 40 * 8


def test_sigterm_ends_stopped_with_a_checkpoint(tiny_config):
    store = RunStore()
    run_id = start(tiny_config, *SLOW)
    wait_until(lambda: len(loss_steps(store, run_id)) >= 3, what="training to start")
    os.kill(store.get_run(run_id).pid, signal.SIGTERM)
    wait_until(lambda: store.get_run(run_id).status == "stopped", what="the SIGTERM stop")
    last = store.checkpoints(run_id)[-1]
    assert Path(last.path, "state.json").is_file()


def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_config):
    store = RunStore()
    sets = ("train.epochs=6", "train.log_every=1", "train.checkpoint_every=3")
    reference = start(tiny_config, *sets)
    wait_until(lambda: store.get_run(reference).status == "completed", what="the reference run")

    victim = start(tiny_config, *sets)
    wait_until(lambda: any(c.step >= 9 for c in store.checkpoints(victim)),
               what="a checkpoint past step 9")
    pid = store.get_run(victim).pid
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{pid}").exists()
               or open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z", what="the kill")
    store.db.execute("UPDATE runs SET heartbeat_unix = heartbeat_unix - 600 WHERE id = ?",
                     [victim])
    store.db.conn.commit()
    listed = hubtune("runs", "ls", "--json")  # listing reaps dead workers
    assert '"interrupted"' in listed.stdout
    assert store.get_run(victim).status == "interrupted"

    resumed = hubtune("runs", "resume", str(victim))
    assert resumed.returncode == 0, resumed.stderr
    assert store.get_run(victim).status == "completed"
    # Metrics are contiguous: every logged step exactly once.
    steps = loss_steps(store, victim)
    assert steps == list(range(1, steps[-1] + 1))
    a = load_file(Path(store.get_run(reference).output_dir) / "model" / "model.safetensors")
    b = load_file(Path(store.get_run(victim).output_dir) / "model" / "model.safetensors")
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_resume_refuses_a_completed_run(tiny_config):
    store = RunStore()
    run_id = start(tiny_config, "train.epochs=1")
    wait_until(lambda: store.get_run(run_id).status == "completed", what="the run")
    result = hubtune("runs", "resume", str(run_id))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: Run {run_id} already completed; fork it (hubtune runs fork {run_id}) "
        "to train more.")


def test_fork_records_the_parent_and_the_change(tiny_config):
    store = RunStore()
    parent = start(tiny_config, "train.epochs=1")
    wait_until(lambda: store.get_run(parent).status == "completed", what="the parent")
    result = hubtune("runs", "fork", str(parent), "--set", "train.learning_rate=0.001")
    assert result.returncode == 0, result.stderr
    child = int(result.stdout.splitlines()[0])
    run = store.get_run(child)
    assert run.parent_id == parent and run.status == "completed"
    cmp = store.compare([parent, child])
    assert cmp.config_diff["train.learning_rate"] == (0.003, 0.001)


def test_damaged_checkpoints_and_racing_resumes(tiny_config):
    """A resume whose every checkpoint is damaged fails in one sentence without printing
    the earlier attempt's outcome; with only the newest damaged, two resumes racing
    start exactly one worker, which passes over that checkpoint and says so."""
    import pickle
    import shutil

    store = RunStore()
    run_id = start(tiny_config, *SLOW)
    wait_until(lambda: len(store.checkpoints(run_id)) >= 2, what="two checkpoints")
    assert hubtune("runs", "stop", str(run_id)).returncode == 0
    wait_until(lambda: store.get_run(run_id).status == "stopped", what="the stop")
    kept = [Path(c.path) for c in store.checkpoints(run_id) if Path(c.path).is_dir()]
    assert len(kept) >= 2
    backups = {p: p.parent.parent / f"{p.name}.bak" for p in kept}
    for path, backup in backups.items():
        shutil.copytree(path, backup)
        (path / "optimizer.pt").write_bytes(pickle.dumps(object()))  # only torch.load can tell

    failed = hubtune("runs", "resume", str(run_id))
    assert failed.returncode != 0
    assert "no intact checkpoint to resume from" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert f"Run {run_id} stopped" not in failed.stdout and "accuracy" not in failed.stdout
    assert store.get_run(run_id).status == "failed"

    for path, backup in list(backups.items())[:-1]:  # every checkpoint but the newest intact
        shutil.rmtree(path)
        backup.rename(path)
    events_before = len(store.events(run_id))
    racers = [subprocess.Popen([sys.executable, "-m", "tui.cli", "runs", "resume", str(run_id),
                                "--detach"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in racers]
    assert sorted(rc == 0 for rc, _ in outcomes) == [False, True], outcomes
    loser = next(err for rc, err in outcomes if rc != 0)
    assert "only a stopped, interrupted or failed run can be resumed" in loser, loser
    wait_until(lambda: len(loss_steps(store, run_id)) > 0
               and store.get_run(run_id).status == "running", what="the resumed worker")
    newest = list(backups)[-1].name
    wait_until(lambda: any("Resumed from" in e.message for e in store.events(run_id)[events_before:]),
               what="the resume event")
    new_events = [e.message for e in store.events(run_id)[events_before:]]
    assert sum("Resumed from" in m for m in new_events) == 1  # one worker, not two
    assert any(m.startswith(f"Checkpoint {newest} is damaged") for m in new_events), new_events
    stopped = hubtune("runs", "stop", str(run_id))
    assert stopped.returncode == 0, (stopped.stderr, store.get_run(run_id).error)
    wait_until(lambda: store.get_run(run_id).status == "stopped", what="the second stop")


def test_hubtune_home_removed_mid_run_stops_the_worker_and_the_follower(tiny_config,
                                                                        hubtune_home):
    store = RunStore()
    run_id = start(tiny_config, *SLOW)
    follower = subprocess.Popen([sys.executable, "-m", "tui.cli", "runs", "follow", str(run_id)],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    wait_until(lambda: len(loss_steps(store, run_id)) >= 3, what="training to start")
    pid = store.get_run(run_id).pid
    store.close()
    # Moved away in one step (an rmtree races the worker's checkpoint writes); either way
    # the path is gone, and SQLite would write on into the moved file, unnoticed.
    hubtune_home.rename(hubtune_home.with_name("home-removed"))
    _, err = follower.communicate(timeout=60)
    assert follower.returncode != 0
    assert "was removed or replaced while following run" in err and "Traceback" not in err
    wait_until(lambda: not Path(f"/proc/{pid}").exists()
               or open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z",
               timeout=60, what="the worker to stop")
