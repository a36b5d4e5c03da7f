"""Checkpoints that let a run resume exactly where it stopped.

A checkpoint folder holds the model weights (safetensors), optimizer and
scheduler state, every RNG state (python, numpy, torch, CUDA) and the loop
position (step, epoch, batches consumed in that epoch, early-stopping
state). It is written to `<name>.tmp` and renamed into place, so a crash or a
full disk mid-write never leaves a half checkpoint that looks complete, and
the previous one stays loadable. Everything loads with `weights_only=True`.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from engine.errors import HubtuneError

STATE_FILE = "state.json"


@dataclass
class LoopState:
    """Where the training loop was when the checkpoint was taken."""

    step: int
    epoch: int
    batches_in_epoch: int
    """Batches of `epoch` already consumed (the data position)."""
    best_metric: float | None
    best_step: int
    evals_without_gain: int


class CheckpointError(HubtuneError):
    """A checkpoint could not be written or read."""


def save_checkpoint(folder: Path, model, optimizer, scheduler, state: LoopState) -> Path:
    from safetensors.torch import save_model

    final = Path(folder)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        save_model(model, str(tmp / "model.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        python_numpy, tensors = _rng_state()
        torch.save(tensors, tmp / "rng.pt")
        (tmp / "rng.json").write_text(json.dumps(python_numpy), encoding="utf-8")
        (tmp / STATE_FILE).write_text(json.dumps(asdict(state)), encoding="utf-8")
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise CheckpointError(
                f"The disk is full: the checkpoint at step {state.step} could not be written to "
                f"{final.parent}; free space and resume the run from its last checkpoint."
            ) from None
        raise CheckpointError(
            f"Cannot write the checkpoint at step {state.step} to {final} ({exc.strerror})."
        ) from None
    return final


def load_checkpoint(folder: Path, model, optimizer, scheduler) -> LoopState:
    """Restore weights, optimizer, scheduler and RNG; returns the loop position."""
    from safetensors.torch import load_model

    folder = Path(folder)
    if not (folder / STATE_FILE).is_file():
        raise CheckpointError(f"{folder} is not a complete checkpoint; pick another one.")
    try:
        load_model(model, str(folder / "model.safetensors"))
        optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        tensors = torch.load(folder / "rng.pt", weights_only=True)
        python_numpy = json.loads((folder / "rng.json").read_text(encoding="utf-8"))
        state = LoopState(**json.loads((folder / STATE_FILE).read_text(encoding="utf-8")))
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"Cannot load the checkpoint {folder}: {exc}") from None
    _set_rng_state(python_numpy, tensors)
    return state


def latest_checkpoint(run_folder: Path) -> Path | None:
    root = Path(run_folder) / "checkpoints"
    found = [p for p in root.glob("step-*") if p.is_dir() and (p / STATE_FILE).is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[1])) if found else None


def prune_checkpoints(run_folder: Path, keep: int, protect: int | None = None) -> None:
    """Keep the newest `keep` checkpoints, and the one of step `protect` (the best)."""
    root = Path(run_folder) / "checkpoints"
    found = sorted((p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")),
                   key=lambda p: int(p.name.split("-")[1]))
    for old in found[:-keep] if keep > 0 else []:
        if old.name != f"step-{protect}":
            shutil.rmtree(old, ignore_errors=True)


def _rng_state() -> tuple[dict, dict]:
    """(python and numpy states as JSON-able data, torch states as tensors)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
    }
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return plain, tensors


def _set_rng_state(plain: dict, tensors: dict) -> None:
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(tensors["cuda"]))


def _fsync_dir(folder: Path) -> None:
    for p in folder.iterdir():
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())
