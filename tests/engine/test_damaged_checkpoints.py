"""A damaged newest checkpoint: passed over for the newest intact one, or one sentence."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from engine.core.errors import HubtuneError
from engine.launch.resume import resume_point
from engine.training.checkpoint import LoopState, checkpoint_problem, save_checkpoint


def _save(folder: Path, step: int) -> Path:
    torch.manual_seed(step)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    state = LoopState(step=step, epoch=0, batches_in_epoch=step, best_metric=None,
                      best_step=0, evals_without_gain=0)
    return save_checkpoint(folder / f"step-{step}", model, optimizer, scheduler, state)


class Foreign:
    """Something a pickle may hold that is not a tensor state (refused by weights_only)."""


DAMAGE = {
    "truncated weights": lambda f: (f / "model.safetensors").write_bytes(
        (f / "model.safetensors").read_bytes()[:-7]),
    "weights replaced by text": lambda f: (f / "model.safetensors").write_text("oops"),
    "foreign optimizer pickle": lambda f: (f / "optimizer.pt").write_bytes(
        pickle.dumps(Foreign())),
    "optimizer of another kind": lambda f: torch.save({"not": "an optimizer"}, f / "optimizer.pt"),
    "unexpected keys in the state": lambda f: (f / "state.json").write_text(
        json.dumps({**json.loads((f / "state.json").read_text()), "surprise": 1})),
    "state not JSON": lambda f: (f / "state.json").write_text("{"),
    "rng states missing a key": lambda f: (f / "rng.json").write_text('{"python": []}'),
    "scheduler file gone": lambda f: (f / "scheduler.pt").unlink(),
    "empty rng tensors file": lambda f: (f / "rng.pt").write_bytes(b""),
}


@pytest.fixture
def three_checkpoints(store, tmp_path):
    run_id = store.create_run({})
    for step in (2, 4, 6):
        path = _save(tmp_path / "checkpoints", step)
        store.add_checkpoint(run_id, step, str(path), None)
    return run_id, tmp_path / "checkpoints"


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_newest_checkpoint_is_passed_over(store, three_checkpoints, damage):
    run_id, root = three_checkpoints
    assert checkpoint_problem(root / "step-6") is None
    DAMAGE[damage](root / "step-6")
    assert checkpoint_problem(root / "step-6") is not None

    point = resume_point(store, run_id, deep=True)
    assert point.path.name == "step-4"
    assert [name for name, _ in point.skipped] == ["step-6"]
    (note,) = point.notes()
    assert note.startswith("Checkpoint step-6 is damaged (") and "resuming from step-4" in note


def test_the_light_check_needs_no_torch_files_but_the_deep_one_reads_them(store,
                                                                           three_checkpoints):
    run_id, root = three_checkpoints
    DAMAGE["foreign optimizer pickle"](root / "step-6")
    assert resume_point(store, run_id).path.name == "step-6"  # the CLI's check, no torch load
    assert resume_point(store, run_id, deep=True).path.name == "step-4"  # the worker's


def test_a_named_checkpoint_is_used_or_refused_in_one_sentence(store, three_checkpoints):
    run_id, root = three_checkpoints
    assert resume_point(store, run_id, "step-2", deep=True).path.name == "step-2"
    with pytest.raises(HubtuneError, match=r"has no checkpoint step-9; its checkpoints: "
                                           r"step-2, step-4, step-6\."):
        resume_point(store, run_id, "step-9")
    DAMAGE["truncated weights"](root / "step-2")
    with pytest.raises(HubtuneError, match=r"Checkpoint step-2 of run \d+ is damaged \(.*\); "
                                           r"pick another of"):
        resume_point(store, run_id, "step-2")


def test_no_intact_checkpoint_is_one_sentence(store, three_checkpoints):
    run_id, root = three_checkpoints
    for step in (2, 4, 6):
        DAMAGE["truncated weights"](root / f"step-{step}")
    with pytest.raises(HubtuneError, match=r"has no intact checkpoint to resume from "
                                           r"\(step-6: .*step-2: .*\); fork it"):
        resume_point(store, run_id)


def test_loading_a_checkpoint_that_does_not_fit_the_model_is_one_sentence(tmp_path):
    from engine.training.checkpoint import CheckpointError, load_checkpoint

    folder = _save(tmp_path, 3)
    model = torch.nn.Linear(4, 5)  # another shape: the architecture changed
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    with pytest.raises(CheckpointError, match=r"Cannot load the checkpoint step-3 \(.*\); it "
                                              r"does not fit"):
        load_checkpoint(folder, model, optimizer, scheduler)
