"""Exact resume: stopped at step k and resumed, a run ends with the same parameters."""

from __future__ import annotations

import threading

import pytest
import torch
from safetensors.torch import load_file

from engine.core.events import CheckpointSaved, StepLogged
from engine.training.checkpoint import latest_checkpoint
from engine.training.loop import train


def _cfg(tmp_path, tiny_bert, sentiment_csv, **train_keys):
    from tests.support.tests_helpers import config_for

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=3)
    import dataclasses

    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train_keys))


@pytest.mark.parametrize("stop_at", [3, 8])  # mid-epoch, and right at an epoch's end
def test_resumed_run_matches_an_uninterrupted_one(tmp_path, tiny_bert, sentiment_csv, stop_at):
    # Deterministic kernels: bit-exact on a GPU too (atomics in cuBLAS, cudnn, attention).
    cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, grad_accumulation=1, deterministic=True)
    full = train(cfg, lambda e: None, threading.Event(), out_dir=tmp_path / "full")
    assert full.status == "completed"

    stop = threading.Event()

    def emit(event):
        if isinstance(event, StepLogged) and event.step == stop_at:
            stop.set()

    part = train(cfg, emit, stop, out_dir=tmp_path / "part")
    assert part.status == "stopped" and part.summary["steps"] == stop_at
    checkpoint = latest_checkpoint(tmp_path / "part")
    assert checkpoint.name == f"step-{stop_at}"

    resumed = train(cfg, lambda e: None, threading.Event(), out_dir=tmp_path / "part",
                    resume_from=checkpoint)
    assert resumed.status == "completed"
    assert resumed.summary["steps"] == full.summary["steps"]

    a = load_file(tmp_path / "full" / "model" / "model.safetensors")
    b = load_file(tmp_path / "part" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert resumed.summary["final_accuracy"] == full.summary["final_accuracy"]


def test_checkpoints_are_pruned_and_reported(tmp_path, tiny_bert, sentiment_csv):
    cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, checkpoint_every=2, keep_checkpoints=2)
    saved = []
    outcome = train(cfg, saved.append, threading.Event(), out_dir=tmp_path / "run")
    assert outcome.status == "completed"
    reported = [e.step for e in saved if isinstance(e, CheckpointSaved)]
    assert reported == sorted(set(reported)) and len(reported) >= 5
    on_disk = sorted(int(p.name.split("-")[1])
                     for p in (tmp_path / "run" / "checkpoints").iterdir())
    # The newest two, and the best evaluation's, which the final model is taken from.
    assert on_disk == sorted(set(reported[-2:]) | {outcome.summary["best_step"]})


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, tiny_bert, sentiment_csv,
                                                   monkeypatch):
    import errno

    from engine.training.checkpoint import CheckpointError, load_checkpoint

    cfg = _cfg(tmp_path, tiny_bert, sentiment_csv, checkpoint_every=2)
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] > 8:  # the first two checkpoints succeed (4 torch.save calls each)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(CheckpointError, match="The disk is full: the checkpoint at step 6"):
        train(cfg, lambda e: None, threading.Event(), out_dir=tmp_path / "run")
    monkeypatch.setattr(torch, "save", real_save)
    last = latest_checkpoint(tmp_path / "run")
    assert last.name == "step-4"
    assert not list((tmp_path / "run" / "checkpoints").glob("*.tmp"))
    import dataclasses

    from engine.modeling.loading import SequenceClassifier  # noqa: F401 - the model type being restored

    # The surviving checkpoint loads into a freshly built run.
    from tests.support.tests_helpers import prepared_loop

    loop = prepared_loop(dataclasses.replace(cfg), resume_from=last)
    assert loop.run.state.step == 4
    assert isinstance(load_checkpoint, object)


def test_images_decoded_in_data_workers_resume_exactly(tmp_path, tmp_path_factory):
    """Augmented images decoded in two data worker processes: each crop is seeded by
    (seed, epoch, example), so a run stopped mid-epoch and resumed ends with the
    parameters of an unbroken one, whichever process decoded what."""
    from engine.core.config import RunConfig
    from engine.core.events import Note
    from tests.support import task_data as td
    from tests.support.tiny_models import make_tiny_vit

    data = td.write_digits_folder(tmp_path_factory.mktemp("digits") / "d", per_class=12,
                                  classes=range(3))
    model = make_tiny_vit(tmp_path_factory.mktemp("vit") / "vit")
    cfg = RunConfig.from_dict({
        "model": {"id": str(model)}, "head": {"task": "image-classification"},
        "data": {"train": str(data), "validation_split": 0.25, "augment": True},
        "train": {"epochs": 2, "batch_size": 4, "learning_rate": 2e-3, "log_every": 1,
                  "seed": 3, "data_workers": 2, "restore_best": False,
                  "deterministic": True},
        "base_dir": str(tmp_path),
    })
    notes = []
    full = train(cfg, notes.append, threading.Event(), out_dir=tmp_path / "full")
    assert full.status == "completed", full.error
    assert any(isinstance(e, Note) and e.message == "Reading batches in 2 data worker processes"
               for e in notes)
    logged = [e.metrics for e in notes if isinstance(e, StepLogged)]
    assert logged and all("tokens_per_s" not in m for m in logged)  # images have no tokens
    stop = threading.Event()
    part = train(cfg, lambda e: stop.set() if isinstance(e, StepLogged) and e.step == 4
                 else None, stop, out_dir=tmp_path / "part")
    assert part.status == "stopped"
    resumed = train(cfg, lambda e: None, threading.Event(), out_dir=tmp_path / "part",
                    resume_from=latest_checkpoint(tmp_path / "part"))
    assert resumed.status == "completed", resumed.error
    a = load_file(tmp_path / "full" / "model" / "model.safetensors")
    b = load_file(tmp_path / "part" / "model" / "model.safetensors")
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
