"""Data parallel correctness under real torchrun processes over gloo (issue #24).

- Parameters that gradual unfreezing opens after the model is wrapped are averaged
  across ranks: both ranks end with the same parameters.
- A two-process run stopped and resumed ends with exactly the parameters of an
  unbroken one (each rank's own RNG states are checkpointed), compiled, with its
  checkpoints' weights under their plain names.
- A failure on one rank ends the whole run with that rank's reason, and divergence is
  judged on the loss every rank agrees on.

GPUs are hidden (CUDA_VISIBLE_DEVICES=""), so these run over gloo on a GPU box too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SUPPORT = REPO / "tests" / "support"


def _env() -> dict:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def _torchrun(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         *args], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=_env())


def _probe(config: Path, out: Path, result: Path, *extra: str) -> dict:
    done = _torchrun(str(SUPPORT / "dist_probe.py"), str(config), str(out), str(result),
                     *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((result / "outcome.json").read_text())


def _params(result: Path, rank: int) -> dict[str, torch.Tensor]:
    return load_file(result / f"rank{rank}.safetensors")


def _differing(a: dict, b: dict) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


def test_unfrozen_parameters_stay_in_step_and_a_resumed_run_is_exact(
        tmp_path, tiny_bert, sentiment_csv):
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=3, max_steps=9).to_dict()
    # Blocks open at steps 2 and 4, after the model was wrapped for data parallel; the
    # best weights are not put back, so the final parameters are the last step's.
    cfg["freeze"] = {"policy": "gradual", "every_steps": 2}
    cfg["train"].update(restore_best=False, eval_every=3, log_every=1)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg))
    # The stopped run is compiled, with the eager backend: the compile wrapper inside
    # data parallel as on a GPU, the numbers of the plain model, no C++ compiler run.
    cfg["train"]["compile"] = True
    compiled = tmp_path / "compiled.json"
    compiled.write_text(json.dumps(cfg))

    unbroken = _probe(config, tmp_path / "a", tmp_path / "ra")
    assert unbroken["status"] == "completed", unbroken
    assert any(n.startswith("Gradual unfreezing, stage 2") for n in unbroken["notes"])
    rank0, rank1 = _params(tmp_path / "ra", 0), _params(tmp_path / "ra", 1)
    assert _differing(rank0, rank1) == []
    # The opened blocks did train (the check above would hold trivially otherwise).
    original = load_file(tiny_bert / "model.safetensors")
    key = "encoder.layer.1.output.dense.weight"
    assert not torch.equal(rank0[f"backbone.{key}"], original[key])

    stopped = _probe(compiled, tmp_path / "b", tmp_path / "rb", "--stop-at", "5",
                     "--eager-compile")
    assert stopped["status"] == "stopped", stopped
    checkpoint = tmp_path / "b" / "checkpoints" / f"step-{stopped['steps']}"
    assert 5 <= stopped["steps"] < 9
    assert (checkpoint / "rng-ranks.pt").is_file()
    # Compiled inside data parallel, the weights still carry their plain names.
    keys = load_file(checkpoint / "model.safetensors").keys()
    assert "head.1.weight" in keys and not [k for k in keys if "_orig_mod" in k]
    resumed = _probe(config, tmp_path / "b", tmp_path / "rc", "--resume", str(checkpoint))
    assert resumed["status"] == "completed", resumed
    assert resumed["steps"] == 9
    assert _differing(_params(tmp_path / "rc", 0), rank0) == []
    assert _differing(_params(tmp_path / "rc", 1), rank1) == []


def test_a_rollback_on_a_non_finite_loss_keeps_the_ranks_in_step(
        tmp_path, tiny_bert, sentiment_csv):
    """Rank 1's loss is NaN once, at step 5: the loss every rank agrees on is NaN at the
    step-6 log line, so both go back together (rank 0 decides) to the newest checkpoint
    at or before step 3 (the weights of step 4 made the NaN), replay with the lower rate
    and finish with the same parameters."""
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=3, max_steps=9).to_dict()
    cfg["train"].update(log_every=2, checkpoint_every=2, keep_checkpoints=5, eval_every=100,
                        restore_best=False,
                        watch={"non_finite": {"action": "rollback"}, "max_rollbacks": 2})
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg))
    outcome = _probe(config, tmp_path / "a", tmp_path / "ra", "--nan-once-at", "5")
    assert outcome["status"] == "completed", outcome
    assert outcome["steps"] == 9
    (rolled,) = [n for n in outcome["notes"] if n.startswith("Rolled back")]
    assert "(non_finite, 1 of 2)" in rolled and "checkpoint of step 2" in rolled, rolled
    assert _differing(_params(tmp_path / "ra", 0), _params(tmp_path / "ra", 1)) == []


def _failing_run(tmp_path: Path, config_path: Path, fault: str) -> tuple:
    """A run recorded as `runs` would, its worker started under torchrun with `fault`
    injected into rank 1; returns (the run, the torchrun result)."""
    import yaml

    from engine.core.config import load_config
    from store import RunStore, run_dir

    cfg = load_config(config_path)
    store = RunStore()
    run_id = store.create_run(cfg.to_dict(), name="faulty", model_id=cfg.model.id,
                              task=cfg.head.task)
    folder = run_dir(run_id)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    (folder / "launch.json").write_text(json.dumps({"processes": 2}))
    lease = store.get_run(run_id).lease
    env = {**_env(), "HUBTUNE_TEST_FAULT": fault}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(SUPPORT / "faulty_rank.py"), str(run_id), str(store.path), "--lease", lease],
        capture_output=True, text=True, timeout=240, cwd=REPO, env=env)
    return store.get_run(run_id), done


@pytest.mark.parametrize("fault, reason", [
    ("oom-eval", "Rank 1 failed: Out of GPU memory while evaluating at step 4"),
    # Rank 1's loss turns NaN at its third step: the mean both ranks agree on is NaN at the
    # next log line (log_every 2), so both stop there and rank 0 records it itself.
    ("nan-loss", "Training diverged (loss is nan) at step 4"),
])
def test_a_failure_on_one_rank_ends_the_run_with_its_reason(tmp_path, tiny_config, fault,
                                                            reason):
    run, done = _failing_run(tmp_path, tiny_config, fault)
    assert run.status == "failed", (run.status, run.error, done.stderr[-2000:])
    assert run.error.startswith(reason), run.error
    if fault == "oom-eval":
        assert run.summary["failure_reason"] == "oom"
