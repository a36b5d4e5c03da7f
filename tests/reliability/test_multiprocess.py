"""`hubtune train --processes 2`: two CPU processes over gloo, one writer to the store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_two_process_training_completes_with_one_writer(tiny_config):
    # No GPU visible: the two ranks are CPU processes over gloo on a GPU box too (a box
    # with one GPU would otherwise refuse two processes, and NCCL is not what is tested).
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(
        [sys.executable, "-m", "tui.cli", "train", str(tiny_config), "--processes", "2",
         "--set", "train.epochs=8"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    run_id = int(result.stdout.splitlines()[0])
    from store import RunStore, run_dir

    store = RunStore()
    run = store.get_run(run_id)
    assert run.status == "completed", run.error
    notes = [e.message for e in store.events(run_id)]
    parallel = [n for n in notes if n.startswith("Data parallel over 2 processes (gloo)")]
    assert len(parallel) == 1  # rank 1 wrote nothing
    assert sum(n.startswith("Training ") for n in notes) == 1
    # 120 training rows in batches of 16: 8 batches an epoch, 4 for each process.
    assert "each sees 4 of 8 batches" in parallel[0]
    total = store.series(run_id, "total_steps")
    assert total.values == [32.0]  # 8 epochs x 4 steps per process
    rows = store.db.execute("SELECT name, step, COUNT(*) FROM metrics WHERE run_id = ? "
                            "GROUP BY name, step HAVING COUNT(*) > 1", [run_id]).fetchall()
    assert rows == []
    assert len(store.series(run_id, "val_accuracy")) == 8
    assert run.summary["best_accuracy"] > run.summary["baseline_majority_accuracy"]
    assert (Path(run.output_dir) / "model" / "model.safetensors").is_file()
    # torchrun's per-launch folder sits in the run's folder, not one more in /tmp per run
    assert [p.name for p in (run_dir(run_id) / "torchrun").iterdir()]
