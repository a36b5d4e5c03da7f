"""Resuming a run: which checkpoint it continues from (damaged ones passed over) and the
relaunch of its worker under a new lease.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.cluster.gpus import check_process_count
from engine.core.errors import HubtuneError
from engine.launch import start
from engine.runs.lifecycle import RESUMABLE, check_resumable
from store import RunStore, StoreError


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a resume starts from, and the newer ones passed over."""

    path: Path
    skipped: tuple[tuple[str, str], ...] = ()
    """(checkpoint name, what is wrong with it) for each newer one found damaged."""

    def notes(self) -> list[str]:
        return [f"Checkpoint {name} is damaged ({problem}); resuming from {self.path.name} "
                "instead." for name, problem in self.skipped]


def resume_point(store: RunStore, run_id: int, wanted: str | None = None, *,
                 deep: bool = False) -> ResumePoint:
    """The checkpoint to resume from: `wanted` (`step-N`) if given and intact, else
    the newest intact one the store records.

    The store's record is written after the metrics up to that step, so resuming
    from it never leaves a gap in the series, even when the worker died between
    writing a checkpoint and flushing its last metrics. A damaged checkpoint
    (truncated weights, a foreign file, unexpected keys) is passed over for the
    next older one; `deep` also opens the torch files (the worker does).
    """
    from engine.training.checkpoint import checkpoint_problem

    recorded = [Path(c.path) for c in store.checkpoints(run_id)]
    names = ", ".join(p.name for p in recorded) or "none"
    if wanted is not None:
        chosen = [p for p in recorded if p.name == wanted]
        if not chosen:
            raise HubtuneError(f"Run {run_id} has no checkpoint {wanted}; its checkpoints: "
                               f"{names}.")
        problem = checkpoint_problem(chosen[0], deep=deep)
        if problem:
            raise HubtuneError(f"Checkpoint {wanted} of run {run_id} is damaged ({problem}); "
                               f"pick another of: {names}.")
        return ResumePoint(chosen[0])
    skipped: list[tuple[str, str]] = []
    for path in reversed(recorded):
        problem = checkpoint_problem(path, deep=deep)
        if problem is None:
            return ResumePoint(path, tuple(skipped))
        skipped.append((path.name, problem))
    if skipped:
        found = "; ".join(f"{name}: {problem}" for name, problem in skipped)
        raise HubtuneError(f"Run {run_id} has no intact checkpoint to resume from ({found}); "
                           f"fork it (hubtune runs fork {run_id}) to start again.")
    raise HubtuneError(f"Run {run_id} has no checkpoint to resume from; fork it "
                       f"(hubtune runs fork {run_id}) to start again.")


def resume_run(store: RunStore, run_id: int, checkpoint: str | None = None) -> ResumePoint:
    """Restart a stopped, interrupted or failed run from its newest intact checkpoint
    (or `checkpoint`, a `step-N` name).

    The run is requeued with a new lease in one conditional update, so of two
    resumes racing (or a resume racing `rm`) exactly one starts a worker.
    """
    store.reap_interrupted()
    check_resumable(store.get_run(run_id))
    home = store.recorded_home(run_id)
    processes = start.launch_processes(run_id, home / "runs" / str(run_id) if home else None)
    check_process_count(processes, run_id=run_id)
    point = resume_point(store, run_id, checkpoint)
    try:
        lease = store.requeue(run_id, allowed=tuple(RESUMABLE))
    except StoreError as exc:  # another command got to the run first
        raise HubtuneError(str(exc)) from None
    from engine.runs.queue import slots_wanted, take_slots

    try:  # a resume that cannot launch leaves the run failed, and so resumable again
        devices = take_slots(store, run_id, slots_wanted(processes))
        # Only a checkpoint the user named is passed on: otherwise the worker chooses
        # again with the deep check, and may pass over one whose torch files are damaged.
        start.spawn_worker(store, run_id, lease, resume=True, checkpoint=checkpoint, devices=devices,
               keep_cuda=os.environ.get("CUDA_VISIBLE_DEVICES") is not None)
    except BaseException as exc:
        start.launch_failed(store, run_id, lease, exc)
        raise
    return point
