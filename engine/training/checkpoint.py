"""Checkpoints that let a run resume exactly where it stopped.

A checkpoint folder holds the model weights (safetensors), optimizer and
scheduler state, every RNG state (python, numpy, torch, CUDA) and the loop
position (step, epoch, batches consumed in that epoch, early-stopping
state). A data-parallel run also keeps each rank's own RNG states
(`rng-ranks.pt`: every rank draws its own dropout masks on its own device), and
an fp16 run its gradient scaler (`scaler.pt`). Only rank 0 writes; the other
ranks hand it their states first. It is written to `<name>.tmp` and renamed into place, so a crash or a
full disk mid-write never leaves a half checkpoint that looks complete, and
the previous one stays loadable. Everything loads with `weights_only=True`. torch is imported inside the functions
that need it, so checking a checkpoint's files (`checkpoint_problem(deep=False)`)
stays cheap for the CLI and the TUI.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.core.errors import HubtuneError

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


RANKS_FILE = "rng-ranks.pt"
SCALER_FILE = "scaler.pt"


def save_checkpoint(folder: Path, model, optimizer, scheduler, state: LoopState, *,
                    scaler=None, ranks: list[dict] | None = None) -> Path:
    """Write the checkpoint; `ranks` are every rank's `rank_rng_state()` in rank order
    (several processes), `scaler` the fp16 gradient scaler."""
    import torch
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
        if ranks is not None:
            torch.save(ranks, tmp / RANKS_FILE)
        if scaler is not None:
            torch.save(scaler.state_dict(), tmp / SCALER_FILE)
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


def load_checkpoint(folder: Path, model, optimizer, scheduler, *, scaler=None,
                    rank: int = 0) -> LoopState:
    """Restore weights, optimizer, scheduler, scaler and this rank's RNG; returns the
    loop position. Everything is read onto the CPU first (the optimizer moves its state
    to its parameters' device), so a checkpoint written on one GPU loads on any."""
    import torch
    from safetensors.torch import load_model

    folder = Path(folder)
    if not (folder / STATE_FILE).is_file():
        raise CheckpointError(f"{folder} is not a complete checkpoint; pick another one.")
    try:
        def read(name: str):
            return torch.load(folder / name, weights_only=True, map_location="cpu")

        load_model(model, str(folder / "model.safetensors"))
        optimizer.load_state_dict(read("optimizer.pt"))
        scheduler.load_state_dict(read("scheduler.pt"))
        if scaler is not None and (folder / SCALER_FILE).is_file():
            scaler.load_state_dict(read(SCALER_FILE))
        tensors = read("rng.pt")
        python_numpy = json.loads((folder / "rng.json").read_text(encoding="utf-8"))
        ranks = read(RANKS_FILE) if (folder / RANKS_FILE).is_file() else []
        if rank < len(ranks):  # a rank beyond those saved (more processes now) keeps rank 0's
            python_numpy, tensors = json.loads(ranks[rank]["plain"]), ranks[rank]
        state = LoopState(**json.loads((folder / STATE_FILE).read_text(encoding="utf-8")))
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"Cannot load the checkpoint {folder.name} ({first}); it does not fit this run's "
            "model and optimizer. Resume from another one with --checkpoint step-N, or fork "
            "the run to start again."
        ) from None
    _set_rng_state(python_numpy, tensors)
    return state


CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng.pt", "rng.json",
                    STATE_FILE)


def checkpoint_problem(folder: Path, *, deep: bool = True) -> str | None:
    """Why the checkpoint in `folder` cannot be resumed from, or None if it looks intact.

    Cheap enough to run on every candidate before a resume: the safetensors
    header is read and its data length checked against the file (a truncated
    copy fails), the JSON state must hold exactly the loop's fields, and with
    `deep` the torch files are opened memory-mapped with `weights_only` (which
    imports torch: the run's worker process does it, the CLI and TUI check without). What only the model
    can tell (a foreign optimizer, a changed architecture) is left to
    `load_checkpoint`, which fails with one sentence.
    """
    import dataclasses

    folder = Path(folder)
    missing = [name for name in CHECKPOINT_FILES if not (folder / name).is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    try:
        _check_safetensors(folder / "model.safetensors")
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(LoopState)}
        if not isinstance(state, dict) or set(state) != fields:
            return f"{STATE_FILE} does not hold the loop state"
        if not isinstance(state["step"], int) or state["step"] < 0:
            return f"{STATE_FILE} has no valid step"
        plain = json.loads((folder / "rng.json").read_text(encoding="utf-8"))
        if not isinstance(plain, dict) or set(plain) != {"python", "numpy"}:
            return "rng.json does not hold the random states"
        expected = {"optimizer.pt": {"state", "param_groups"}, "rng.pt": {"torch"}}
        if deep:
            import torch
        for name in ("optimizer.pt", "scheduler.pt", "rng.pt") if deep else ():
            try:
                loaded = torch.load(folder / name, weights_only=True, mmap=True,
                                    map_location="cpu")
            except Exception:  # a foreign pickle, an old format, a truncated zip
                return f"{name} is not a readable torch state file"
            if not isinstance(loaded, dict) or not expected.get(name, set()) <= set(loaded):
                return f"{name} is not a {name.removesuffix('.pt')} state"
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"unreadable ({first[:120]})"
    except Exception as exc:  # pickle.UnpicklingError and friends from a foreign file
        return f"unreadable ({type(exc).__name__})"
    return None


def _check_safetensors(path: Path) -> None:
    """Raise ValueError unless `path` is a whole safetensors file (header + all data)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ValueError("model.safetensors is truncated")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise ValueError("model.safetensors is truncated")
        header = json.loads(fh.read(n))
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
              default=0)
    if 8 + n + end != size:
        raise ValueError("model.safetensors is truncated or padded")


def latest_checkpoint(run_folder: Path) -> Path | None:
    found = [p for p in _step_folders(run_folder) if (p / STATE_FILE).is_file()]
    return found[-1] if found else None


def _step_folders(run_folder: Path) -> list[Path]:
    """The run's `checkpoints/step-N` folders by step; anything else there (a `.tmp` being
    written, a user's `step-12.bak` copy) is neither read nor pruned."""
    root = Path(run_folder) / "checkpoints"
    found = [p for p in root.glob("step-*")
             if p.is_dir() and p.name.removeprefix("step-").isdigit()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")))


def prune_checkpoints(run_folder: Path, keep: int, protect: int | None = None) -> None:
    """Keep the newest `keep` checkpoints, and the one of step `protect` (the best)."""
    found = _step_folders(run_folder)
    for old in found[:-keep] if keep > 0 else []:
        if old.name != f"step-{protect}":
            shutil.rmtree(old, ignore_errors=True)


def rank_rng_state() -> dict:
    """This process's RNG states as one rank's entry of `rng-ranks.pt` (loadable with
    `weights_only`): python and numpy as JSON text, torch and its current CUDA device's
    generator as tensors."""

    plain, tensors = _rng_state(all_devices=False)
    return {"plain": json.dumps(plain), **tensors}


def _rng_state(*, all_devices: bool = True) -> tuple[dict, dict]:
    """(python and numpy states as JSON-able data, torch states as tensors); the CUDA
    state of every device, or (a rank of several processes) of its own device only."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
    }
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = (torch.stack(torch.cuda.get_rng_state_all()) if all_devices
                           else torch.cuda.get_rng_state().unsqueeze(0))
    return plain, tensors


def _set_rng_state(plain: dict, tensors: dict) -> None:
    import numpy as np
    import torch

    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        cuda = list(tensors["cuda"])
        if len(cuda) == 1:  # one rank's own device
            torch.cuda.set_rng_state(cuda[0])
        else:
            torch.cuda.set_rng_state_all(cuda[:torch.cuda.device_count()])


def _fsync_dir(folder: Path) -> None:
    for p in folder.iterdir():
        with open(p, "rb") as fh:
            os.fsync(fh.fileno())
