"""Rolling a run back (the `rollback` watch action, train.watch): to its newest
checkpoint at or before the last step a rule trusted, with the learning rate lowered,
at most `train.watch.max_rollbacks` times.

`Rollbacks` is the hand-over between the worker's store thread, where the watch rules
run (engine.launch.sink), and the training loop, which applies a request to its
prepared run (engine.training.prepared) between two optimizer steps
(`roll_back_if_asked`); the loop also asks on its own for a loss that is no longer a
number. A rollback restores the checkpoint whole (weights, optimizer,
schedule, random states, data position), so the replay differs from the first try
only by its rate; checkpoints after it, from the abandoned stretch, are deleted. It is
not a resume: the process and its model stay. torch is imported inside the functions
(the store thread imports this module).
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from engine.core.config import RunConfig
from engine.core.errors import HubtuneError
from engine.core.events import RolledBack


@dataclass(frozen=True)
class RollbackRequest:
    rule: str
    good_step: int
    """The newest step whose weights are trusted: the run goes back to its newest
    checkpoint at or before it."""
    detail: str = ""
    """What was seen, when the loop saw it itself (a non-finite loss)."""


class Rollbacks:
    """Requests from the store thread to the loop, and the count against the limit."""

    def __init__(self, limit: int, factor: float, used: int = 0) -> None:
        self.limit = limit
        self.factor = factor
        """Each rollback multiplies the learning rate by this."""
        self.used = used
        """Rollbacks made (a resumed run's earlier ones included)."""
        self._lock = threading.Lock()
        self._pending: RollbackRequest | None = None

    def request(self, rule: str, good_step: int, detail: str = "") -> bool:
        """Ask for a rollback (any thread); False when the limit is spent. Two requests
        before the loop takes one become one, to the earlier step."""
        with self._lock:
            if self._pending is not None:
                if good_step < self._pending.good_step:
                    self._pending = RollbackRequest(rule, good_step, detail)
                return True
            if self.used >= self.limit:
                return False
            self._pending = RollbackRequest(rule, good_step, detail)
            return True

    def take(self) -> RollbackRequest | None:
        with self._lock:
            pending, self._pending = self._pending, None
            return pending


def rollbacks_for(cfg: RunConfig, used: int = 0) -> Rollbacks | None:
    """The run's Rollbacks when a watch rule may roll it back; None otherwise."""
    spec = cfg.train.watch
    if spec is None:
        return None
    rules = [getattr(spec, name) for name in ("loss_spike", "grad_norm", "plateau", "overfit",
                                               "non_finite")]
    if not any(r is not None and r.action == "rollback" for r in rules):
        return None
    return Rollbacks(spec.max_rollbacks, spec.rollback_lr_factor, used)


def non_finite_rollback(run, box: Rollbacks | None, loss: float) -> bool:
    """A logged loss that is no longer a number, under `non_finite: {action: rollback}`:
    ask for a rollback to the step before the interval; False (the run fails, as it does
    unwatched) without the rule, with the limit spent or with no checkpoint to go to.
    Every rank sees the same (reduced) loss; rank 0's answer is everyone's."""
    from engine.training.ranks import decided_by_rank_0

    spec, st = run.cfg.train.watch, run.state
    rule = spec.non_finite if spec is not None else None
    if box is None or rule is None or rule.action != "rollback":
        return False
    every = run.cfg.train.log_every
    # The interval's losses came from the weights after its first step - 1 on; the
    # previous reading's step is the last whose loss was a number (as in engine.runs.watch).
    good = max((st.step - 1) // every * every - 1, 0)
    asked = (checkpoint_at_or_before(run.out_dir, good) is not None
             and box.request("non_finite", good, f"loss {loss} at step {st.step}"))
    return decided_by_rank_0(run.accelerator, bool(asked))


def checkpoint_at_or_before(run_folder: Path | None, step: int) -> Path | None:
    """The newest complete checkpoint of the run at or before `step` (None without one,
    or for a run that keeps no checkpoints: no `out_dir`)."""
    from engine.training.checkpoint import STATE_FILE, _step_folders

    if run_folder is None:
        return None
    found = [p for p in _step_folders(run_folder)
             if int(p.name.removeprefix("step-")) <= step and (p / STATE_FILE).is_file()]
    return found[-1] if found else None


def roll_back_if_asked(run, box: Rollbacks, evaluation, *, meeting: bool) -> bool:
    """Between two optimizer steps: apply a pending rollback to `run`; True when the loop
    must restart its epoch at the restored data position. With several processes rank 0's
    request (and checkpoint) is shared at logging steps only (`meeting`: the steps every
    rank knows to meet at), a small broadcast. `evaluation` (engine.training.evaluation)
    learns of the restored position."""
    acc = run.accelerator
    if acc.num_processes == 1:
        request = box.take()
        folder = request and checkpoint_at_or_before(run.out_dir, request.good_step)
    else:
        if not meeting:
            return False
        from accelerate.utils import broadcast_object_list

        request = box.take()
        folder = None
        if acc.is_main_process and request is not None:
            folder = checkpoint_at_or_before(run.out_dir, request.good_step)
            request = replace(request, good_step=int(folder.name[5:]) if folder else -1)
        request = broadcast_object_list([request if acc.is_main_process else None])[0]
        if request is not None and request.good_step >= 0:
            folder = run.out_dir / "checkpoints" / f"step-{request.good_step}"
    if request is None:
        return False
    if folder is None:
        from engine.core.events import Note

        run.emit(Note(f"No checkpoint at or before step {request.good_step} to roll back "
                      f"to ({request.rule}); the run goes on.", level="warning"))
        return False
    roll_back(run, box, evaluation, folder, request)
    return True


def roll_back(run, box: Rollbacks, evaluation, folder: Path, request: RollbackRequest) -> None:
    """Restore checkpoint `folder` into the running run and lower its learning rate."""
    from engine.training.checkpoint import STATE_FILE, _step_folders, load_checkpoint

    if not (folder / STATE_FILE).is_file():
        raise HubtuneError(f"Cannot roll back: the checkpoint {folder} is not on this "
                           "machine; keep the run's folder on a shared disk.")
    acc, st = run.accelerator, run.state
    from_step, best_step = st.step, st.best_step
    rates = list(getattr(run.scheduler, "scheduler", run.scheduler).base_lrs)  # peaks now
    restored = load_checkpoint(folder, run.plain_model, run.optimizer, run.scheduler,
                               scaler=acc.scaler, rank=acc.process_index)
    for name, value in vars(restored).items():  # in place: the run's parts hold on to it
        setattr(st, name, value)
    now = lower_rates(run.scheduler, run.optimizer, [r * box.factor for r in rates])
    run.optimizer.zero_grad(set_to_none=True)
    box.take()  # another rank's own request (a non-finite loss) is this one
    box.used += 1
    if acc.is_main_process:  # the abandoned stretch's checkpoints
        for later in _step_folders(run.out_dir):
            if int(later.name.removeprefix("step-")) > st.step:
                shutil.rmtree(later, ignore_errors=True)
    evaluation.rolled_back(best_step)
    run.unfreezing.follow(run)
    run.emit(RolledBack(rule=request.rule, from_step=from_step, to_step=st.step,
                         learning_rate=now[0], previous_rate=rates[0], count=box.used,
                         limit=box.limit, factor=box.factor, detail=request.detail))


def lower_rates(scheduler, optimizer, peaks: list[float]) -> list[float]:
    """Set each parameter group's peak rate (the schedule's base) to `peaks`, scaling where
    the schedule is now by the same ratio; returns the peaks."""
    inner = getattr(scheduler, "scheduler", scheduler)  # accelerate's wrapper
    for i, group in enumerate(optimizer.param_groups):
        base = inner.base_lrs[i]
        group["lr"] *= peaks[i] / base if base else 0.0
        group["initial_lr"] = peaks[i]
    inner.base_lrs = list(peaks)
    return list(peaks)
