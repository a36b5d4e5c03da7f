"""Several machines on loopback (issue #20): two `hubtune train --nnodes 2` launches, one
CPU process each over gloo, meeting through torchrun's static rendezvous.

- The run completes on node 0's store with world_size 2, half the steps per epoch, and
  node 0 the only writer; node 1 records nothing and exits 0.
- A stop requested in node 0's store ends both nodes; `runs resume` on node 0 and
  node 1's command again continue from the checkpoint.
- A lone node 0 fails within its join timeout with one sentence naming the endpoint and
  how many nodes arrived.
- The script `hubtune slurm` writes runs under a stand-in `srun` that starts the nodes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HUBTUNE = [sys.executable, "-m", "tui.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def _node(config: Path, rank: int, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*HUBTUNE, "train", str(config), "--nnodes", "2", "--node-rank", str(rank),
         "--rdzv-endpoint", f"127.0.0.1:{port}", "--join-timeout", "120", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=_env())


def _finish(proc: subprocess.Popen, timeout: int = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def _show(run_id: int) -> dict:
    done = subprocess.run([*HUBTUNE, "runs", "show", str(run_id), "--json"],
                          capture_output=True, text=True, cwd=REPO, env=_env(), check=True)
    return json.loads(done.stdout)


def _check_one_writer(store, run_id: int, attempts: int = 1) -> None:
    """No metric row twice (each attempt records its step-0 total_steps), and one
    "Training ..." event an attempt, not one a node."""
    rows = store.db.execute("SELECT name, step, COUNT(*) FROM metrics WHERE run_id = ? AND "
                            "name != 'total_steps' GROUP BY name, step HAVING COUNT(*) > 1",
                            [run_id]).fetchall()
    assert rows == []
    notes = [e.message for e in store.events(run_id)]
    assert sum(n.startswith("Training ") for n in notes) == attempts


def test_two_nodes_on_loopback_train_one_run(tiny_config, hubtune_home):
    port = _free_port()
    node0 = _node(tiny_config, 0, port, "--set", "train.epochs=2")
    node1 = _node(tiny_config, 1, port, "--set", "train.epochs=2")
    code0, out0, err0 = _finish(node0)
    code1, out1, err1 = _finish(node1)
    assert code0 == 0, err0 + out0
    assert code1 == 0, err1 + out1
    assert "Node 1 done: the run completed" in err1
    run_id = int(out0.splitlines()[0])
    shown = _show(run_id)
    assert shown["status"] == "completed"
    assert shown["world_size"] == 2 and shown["nnodes"] == 2
    assert len(shown["env"]["node_hosts"]) == 2
    from store import RunStore

    store = RunStore()
    # 120 training rows in batches of 16: 8 batches an epoch on one node, 4 on each of two.
    assert store.series(run_id, "total_steps").values == [8.0]
    notes = [e.message for e in store.events(run_id)]
    assert any("each sees 4 of 8 batches" in n for n in notes)
    _check_one_writer(store, run_id)
    assert store.list_runs(limit=None)[0].id == run_id and len(store.list_runs(limit=None)) == 1
    node_dirs = list((hubtune_home / "nodes").iterdir())
    assert len(node_dirs) == 1 and (node_dirs[0] / "worker.log").is_file()
    assert not (node_dirs[0] / "checkpoints").exists()  # global rank 0 writes them


def _stop_both(store, run_id: int, node1: subprocess.Popen, after_step: int) -> int:
    """Wait for training past `after_step`, stop it in node 0's store; both nodes end."""
    deadline = time.monotonic() + 240
    while store.last_step(run_id) <= after_step and time.monotonic() < deadline:
        assert node1.poll() is None, node1.communicate()[1]
        time.sleep(0.5)
    store.request_stop(run_id)
    code1, _, err1 = _finish(node1, 120)
    assert code1 == 1 and "ended stopped on node 1" in err1, err1
    deadline = time.monotonic() + 60
    while store.get_run(run_id).status in ("queued", "running") \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    run = store.get_run(run_id)
    assert run.status == "stopped", run.error
    return run.summary["steps"]


def test_a_stop_in_node_0s_store_ends_both_nodes_and_both_resume(tiny_config):
    from store import RunStore

    port = _free_port()
    settings = ("--set", "train.epochs=200")
    node0 = _node(tiny_config, 0, port, *settings, "--detach")
    node1 = _node(tiny_config, 1, port, *settings)
    code0, out0, err0 = _finish(node0, 60)
    assert code0 == 0, err0
    run_id = int(out0.splitlines()[0])
    store = RunStore()
    stopped_at = _stop_both(store, run_id, node1, 1)
    assert 0 < stopped_at < 800
    # The resume restarts node 0 at the recorded endpoint; node 1 runs its command again
    # and reads the checkpoint node 0 resumes from (one file system here).
    resumed = subprocess.run([*HUBTUNE, "runs", "resume", str(run_id), "--detach"],
                             capture_output=True, text=True, cwd=REPO, env=_env())
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resuming run {run_id} from step-{stopped_at}" in resumed.stdout
    assert "again on nodes 1 to 1" in resumed.stderr
    node1 = _node(tiny_config, 1, port, *settings)
    assert _stop_both(store, run_id, node1, stopped_at) > stopped_at
    _check_one_writer(store, run_id, attempts=2)


def test_a_lone_node_0_fails_within_its_join_timeout(tiny_config):
    port = _free_port()
    started = time.monotonic()
    node0 = subprocess.run(
        [*HUBTUNE, "train", str(tiny_config), "--nnodes", "2", "--node-rank", "0",
         "--rdzv-endpoint", f"127.0.0.1:{port}", "--join-timeout", "5"],
        capture_output=True, text=True, cwd=REPO, env=_env(), timeout=180)
    assert node0.returncode == 1
    sentence = (f"Only 1 of 2 nodes joined the rendezvous at 127.0.0.1:{port} within 5 s; "
                "start the same command on every node")
    assert sentence in node0.stderr
    assert time.monotonic() - started < 120
    run_id = int(node0.stdout.splitlines()[0])
    shown = _show(run_id)
    assert shown["status"] == "failed" and shown["error"].startswith(sentence)


SRUN = """#!/bin/bash
# A stand-in for SLURM's srun: one task per node, all on this machine.
export SLURM_NNODES=2 SLURM_JOB_NODELIST=127.0.0.1,localhost
while [[ "$1" == --* ]]; do shift; done  # srun's own options; the task's command follows
for id in 0 1; do
    SLURM_NODEID=$id "$@" > "$SRUN_LOGS/node$id.log" 2>&1 &
done
wait -n && wait -n
"""


def test_the_sbatch_script_runs_the_nodes_under_a_stand_in_srun(tiny_config, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(SRUN)
    (bin_dir / "srun").chmod(0o755)
    script = tmp_path / "job.sbatch"
    port = _free_port()
    made = subprocess.run(
        [*HUBTUNE, "slurm", str(tiny_config), "--nodes", "2", "--gpus-per-node", "0",
         "--port", str(port), "--join-timeout", "120", "--set", "train.epochs=1",
         "--out", str(script)], capture_output=True, text=True, cwd=REPO, env=_env())
    assert made.returncode == 0, made.stderr
    env = {**_env(), "PATH": f"{bin_dir}:{os.environ['PATH']}", "SRUN_LOGS": str(tmp_path)}
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    logs = {i: (tmp_path / f"node{i}.log").read_text() for i in (0, 1)}
    assert done.returncode == 0, done.stderr + str(logs)
    assert "Node 1 done: the run completed" in logs[1]
    from store import RunStore

    store = RunStore()
    (run,) = store.list_runs(limit=None)
    assert run.status == "completed" and run.env["world_size"] == 2
    assert store.series(run.id, "total_steps").values == [4.0]
