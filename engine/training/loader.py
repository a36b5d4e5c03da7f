"""The training DataLoader: where its batches live, how many worker processes read them,
and what those workers need from the machine.

Three decisions, each a function with its own test (tests/engine/test_cuda_ready.py):

- Pinning follows the batches: page-locked memory only for CPU batches headed to a
  GPU. Cached frozen-backbone features are already on the GPU, and torch refuses to
  pin a CUDA tensor ("cannot pin 'CUDAFloatType'"); batches on the device also rule
  out worker processes, which cannot make CUDA tensors.
- Worker processes hand their batches over in shared memory (`/dev/shm`). A
  container's is 64 MB unless the user says otherwise, and running out kills the
  workers with "Bus error": the workers are cut to what fits, with a warning saying
  how to give the container more (`--ipc=host` or `--shm-size`).
- Workers that live across epochs (`persistent_workers`) keep the collator they
  were started with, so a per-epoch seed (image augmentation) reaches them through
  a shared-memory counter (`EpochCollate`) rather than an attribute set in the
  training process.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

SHM_PATH = Path("/dev/shm")
"""Where DataLoader workers put the batches they hand over (Linux)."""
PREFETCH = 4
"""Batches each worker keeps ready."""
SHM_HEADROOM = 2
"""Shared memory asked per batch in flight: the training process still holds the batch
it trains on (and the one being pinned) while the workers fill their queues."""


def data_workers(wanted: int | str, images: bool, device_type: str) -> int:
    """train.data_workers, with `auto` resolved: images decode beside a GPU's steps (a core
    left for each training process); text batches are only padding, and on a CPU box the
    cores are training."""
    if wanted != "auto":
        return int(wanted)
    if not images or device_type != "cuda":
        return 0
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    per_process = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, min(8, per_process - 1))


def batch_device(collate) -> torch.device:
    """Where the collator's batches live: a collator over data already on a device says
    so with a `device` attribute (FeatureCollator); every other one builds CPU tensors."""
    device = getattr(collate, "device", None)
    return torch.device(device) if device is not None else torch.device("cpu")


def pin_batches(batches_on: torch.device | str, target_type: str) -> bool:
    """Whether the loader should pin its batches: only CPU batches headed to a GPU."""
    return torch.device(batches_on).type == "cpu" and target_type == "cuda"


def shm_free_bytes(path: Path | None = None) -> int | None:
    """Free bytes of the shared-memory file system; None where there is none (not Linux)."""
    path = SHM_PATH if path is None else path
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


@dataclass(frozen=True)
class WorkerChoice:
    """How many data workers a run gets, and the warning when fewer than it asked for."""

    workers: int
    """Worker processes that fit."""
    warning: str | None = None
    """Why there are fewer than asked for, and what would give the rest room."""


def fit_workers(workers: int, batch_bytes: int, free: int | None,
                prefetch: int = PREFETCH) -> WorkerChoice:
    """`workers` cut to what `free` bytes of shared memory hold (None: unknown, no cut)."""
    if workers <= 0 or free is None:
        return WorkerChoice(max(workers, 0))
    per_worker = max(1, SHM_HEADROOM * prefetch * batch_bytes)
    fit = min(workers, free // per_worker)
    if fit == workers:
        return WorkerChoice(workers)
    mib = 1 << 20
    need = -(-workers * per_worker // mib)
    where = f"{fit} data workers" if fit else "the training process (no data workers)"
    return WorkerChoice(fit, (
        f"Shared memory (/dev/shm) has {free // mib} MiB free, under the {need} MiB that "
        f"{workers} data workers need, and a worker that runs out dies with 'Bus error'; "
        f"reading batches in {where} instead: give a container more with `docker run "
        "--ipc=host` or `--shm-size=8g`"))


def batch_bytes_estimate(cfg, images: bool) -> int:
    """A batch's size in bytes, from the config alone: images as float32 pixels (224 a
    side unless data.image_size says), text as int64 ids, mask and token types."""
    t = cfg.train
    if images:
        side = cfg.data.image_size or 224
        return t.batch_size * 3 * side * side * 4
    tokens = t.max_tokens_per_batch or t.batch_size * cfg.data.max_length
    return tokens * 8 * 3


class EpochCollate:
    """A collator whose epoch reaches worker processes that outlive an epoch.

    The epoch sits in a one-element tensor in shared memory, which the worker
    processes' copies of this object share: `set_epoch` in the training process
    is seen by every worker before it is sent the next epoch's first indices.
    """

    def __init__(self, collate) -> None:
        self.collate = collate
        self.epoch = torch.zeros((), dtype=torch.long).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self.epoch.fill_(epoch)
        self.collate.set_epoch(epoch)

    def __call__(self, indices):
        self.collate.set_epoch(int(self.epoch))  # a worker's own copy: set it from shm
        return self.collate(indices)


@dataclass(frozen=True)
class LoaderChoice:
    """The DataLoader's settings, decided before it is built."""

    workers: int
    """Data worker processes (0: batches are made in the training process)."""
    pin_memory: bool
    """Batches in page-locked memory (CPU batches for a GPU only)."""
    persistent: bool
    """Workers kept across epochs (whenever there are any)."""
    warnings: tuple[str, ...] = ()
    """What the run should say about the choice (fewer workers than asked for)."""


def choose_loader(collate, target_type: str, wanted_workers: int, batch_bytes: int,
                  shm: Path | None = None) -> LoaderChoice:
    """Workers, pinning and persistence for a training loader over `collate`."""
    on = batch_device(collate)
    warnings = []
    workers = wanted_workers
    if on.type != "cpu" and workers:
        warnings.append(f"The batches are already on {on.type} (cached features); reading "
                        "them in the training process rather than data workers")
        workers = 0
    if workers:
        choice = fit_workers(workers, batch_bytes, shm_free_bytes(shm))
        workers = choice.workers
        if choice.warning:
            warnings.append(choice.warning)
    return LoaderChoice(workers=workers, pin_memory=pin_batches(on, target_type),
                        persistent=workers > 0, warnings=tuple(warnings))


def make_loader(n: int, sampler, collate, choice: LoaderChoice, seed: int):
    """The DataLoader over example indices 0..n-1, batched by `sampler`."""
    if choice.persistent and hasattr(collate, "set_epoch"):
        collate = EpochCollate(collate)
    loader = torch.utils.data.DataLoader(
        list(range(n)), batch_sampler=sampler, collate_fn=collate,
        # Each new iterator draws a seed from this generator; with the default (the
        # global RNG) a resumed run's dropout masks would drift from an unbroken run's.
        generator=torch.Generator().manual_seed(seed),
        # Page-locked batches copy to the GPU without blocking (the accelerator copies
        # with non_blocking), overlapping the next batch's copy with this step.
        pin_memory=choice.pin_memory, num_workers=choice.workers,
        prefetch_factor=PREFETCH if choice.workers else None,
        # Starting workers again each epoch costs seconds of imports per worker.
        persistent_workers=choice.persistent,
    )
    return loader, collate


def training_loader(cfg, images: bool, device_type: str, n: int, sampler, collate, emit):
    """(DataLoader, the collator it calls, its LoaderChoice) for a run, its warnings and
    its worker count emitted as notes."""
    from engine.core.events import Note

    choice = choose_loader(collate, device_type,
                           data_workers(cfg.train.data_workers, images, device_type),
                           batch_bytes_estimate(cfg, images))
    for warning in choice.warnings:
        emit(Note(warning, level="warning"))
    loader, collate = make_loader(n, sampler, collate, choice, cfg.train.seed)
    if choice.workers:
        emit(Note(f"Reading batches in {choice.workers} data worker processes"))
    return loader, collate, choice
