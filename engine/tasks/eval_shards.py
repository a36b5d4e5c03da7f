"""Evaluation split across the ranks of a data-parallel run.

Every rank forms the same batches of the validation split (they are sorted by length,
so the same on every rank); with a shard set, each rank runs the model on every N-th
batch only, and the small per-batch results (`pieces`) are gathered so that every rank
folds them in the order one process would have: the metrics equal the unsharded ones.
Without a shard (one process, or outside training) everything runs here, in order.

The shard is a context variable set by the training loop around `Task.evaluate`, so a
task's evaluation reads the same with one process or several. Imports torch; never the
store.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

_SHARD: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "hubtune_eval_shard", default=None)
"""(this rank, the number of ranks) while an evaluation is split; None otherwise."""


@contextmanager
def sharded(rank: int, world: int) -> Iterator[None]:
    """Split the evaluations run inside across `world` ranks (a no-op for one)."""
    token = _SHARD.set((rank, world) if world > 1 else None)
    try:
        yield
    finally:
        _SHARD.reset(token)


def my_share(items: Sequence) -> list[tuple[int, Any]]:
    """(position, item) of the items this rank evaluates: every N-th, all of them alone."""
    shard = _SHARD.get()
    if shard is None:
        return list(enumerate(items))
    rank, world = shard
    return [(k, item) for k, item in enumerate(items) if k % world == rank]


def gather(pieces: dict[int, Any]) -> list[Any]:
    """Every rank's pieces (position -> piece), in position order, on every rank.

    Tensors travel on the CPU: a CUDA tensor pickled on one rank would come back on
    that rank's device number on the other."""
    if _SHARD.get() is None:
        return [pieces[k] for k in sorted(pieces)]
    import torch.distributed as dist

    found: list = [None] * dist.get_world_size()
    dist.all_gather_object(found, _to_cpu(pieces))
    merged = {k: piece for part in found for k, piece in part.items()}
    return [merged[k] for k in sorted(merged)]


def _to_cpu(value):
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value
