"""The fine-tuning loop: a prepared run in, events out, an `Outcome` back.

Plain Python on accelerate, read top to bottom like accelerate's examples: `train`
prepares the run (engine.training.setup, which hands on a `PreparedRun`), then
`TrainingLoop` steps through the epochs and hands each concern to its own part:
progress readings (engine.training.progress), evaluations and early stopping
(engine.training.evaluation), checkpoints and the final model (engine.training.saving),
watch-rule rollbacks (engine.training.rollback) and gradual unfreezing
(engine.training.unfreezing). It never prints and never touches the store: the run's
worker process (engine.launch.worker) turns its events into rows. Checkpoints carry
everything needed for a resumed run to end with the same parameters as an
uninterrupted one.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from engine.core.config import RunConfig
from engine.core.errors import HubtuneError
from engine.core.events import Event, Note, Outcome
from engine.data.loading import PreparationStopped
from engine.training.backends import set_determinism
from engine.training.evaluation import Evaluation
from engine.training.prepared import PreparedRun
from engine.training.progress import Progress
from engine.training.rollback import (
    Rollbacks,
    non_finite_rollback,
    roll_back_if_asked,
    rollbacks_for,
)
from engine.training.saving import Checkpoints, save_final
from engine.training.setup import RunSetup


class TrainingLoop:
    """One prepared run's steps, and when to evaluate, checkpoint, roll back or end."""

    def __init__(self, run: PreparedRun, rollbacks: Rollbacks | None = None) -> None:
        self.run = run
        self.rollbacks = rollbacks
        """The watch rules' rollback requests (engine.training.rollback); None: none asked."""
        self.progress = Progress(run)
        self.evaluation = Evaluation(run)
        self.checkpoints = Checkpoints(run)
        self.phase = "training"
        """What the run is doing, for the out-of-memory message: training or evaluating."""

    def train(self) -> Outcome:
        """Step through the epochs until done, stopped, early-stopped, diverged or out
        of memory (in a step or an evaluation)."""
        from engine.training.ranks import check_same_data

        check_same_data(self.run)  # several ranks: the same data and steps, or a sentence
        try:
            return self._epochs()
        except torch.OutOfMemoryError:
            return self.out_of_memory()

    def _epochs(self) -> Outcome:
        run = self.run
        cfg, st, acc = run.cfg, run.state, run.accelerator
        window = self.progress.window
        window.reset()
        run.train_mode()
        status = "completed"
        done = st.step >= run.total_steps
        while not done:
            # The loader too: with one process accelerate re-sets the sampler's epoch from
            # its own counter on every pass (which restarts at 0 in a resumed run); with
            # several it never reaches the sampler inside its shard.
            run.sampler.set_epoch(st.epoch)
            if hasattr(run.collate, "set_epoch"):  # per-epoch augmentation seeds
                run.collate.set_epoch(st.epoch)
            run.loader.set_epoch(st.epoch)
            loader = run.loader
            if st.batches_in_epoch:
                # A resumed run's data position, in this process's own batches: skipped
                # after sharding, so each rank sees what it would have seen unbroken.
                loader = acc.skip_first_batches(run.loader, st.batches_in_epoch)
            run.unfreezing.follow(run)
            for batch in loader:
                if st.batches_in_epoch % cfg.train.grad_accumulation == 0 and self._should_stop():
                    status, done = "stopped", True
                    break
                loss, norm = self._step(batch)
                st.batches_in_epoch += 1
                window.add(loss, batch, norm)
                if not acc.sync_gradients:
                    continue
                st.step += 1
                window.steps += 1
                if run.unfreezing.plan.every_steps:
                    run.unfreezing.follow(run)
                if self.progress.logs(st.step):
                    diverged = self._log()
                    if diverged is not None:
                        return diverged
                elif st.step == run.start_step + 1:
                    self.progress.first_step()
                if self.rollbacks is not None and roll_back_if_asked(
                        run, self.rollbacks, self.evaluation,
                        meeting=self.progress.logs(st.step)):
                    window.reset()  # the restored data position: its epoch starts again
                    break
                paused = time.perf_counter()
                ended = self._after_step()
                window.paused += time.perf_counter() - paused
                if ended or st.step >= run.total_steps:
                    done = True
                    break
        return self._finish(status)

    def _step(self, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One forward and backward pass, and the optimizer step when the batches to
        accumulate are in; the loss, and the gradient norm when one was taken."""
        run = self.run
        acc, model, norm = run.accelerator, run.model, None
        with acc.accumulate(model):
            loss = model(**batch)[0]
            acc.backward(loss)
            if acc.sync_gradients:
                # With clipping the norm comes free; without, it costs a pass over the
                # gradients: taken on the interval's last step only (`grad_norm`).
                clip = run.cfg.train.max_grad_norm or (
                    math.inf if self.progress.logs(run.state.step + 1) else None)
                if clip is not None:
                    norm = acc.clip_grad_norm_(model.parameters(), clip)
            run.overflow.before_step()
            run.optimizer.step()
            # An fp16 overflow skips the step: the schedule must not move either.
            if not run.overflow.skipped(acc.sync_gradients):
                run.scheduler.step()
            run.optimizer.zero_grad(set_to_none=True)
        return loss, norm

    def _log(self) -> Outcome | None:
        """Report the readings since the last log line; a failed Outcome if the loss
        is no longer a number (and no rollback takes the run back)."""
        run = self.run
        mean_loss = self.progress.mean_loss()
        if math.isfinite(mean_loss):
            self.progress.report(mean_loss)
            return None
        if non_finite_rollback(run, self.rollbacks, mean_loss):
            self.progress.window.reset()
            return None
        return Outcome("failed", summary={"steps": run.state.step}, error=(
            f"Training diverged (loss is {mean_loss}) at step {run.state.step}; "
            "lower train.learning_rate or keep max_grad_norm set."))

    def _after_step(self) -> bool:
        """Epoch bookkeeping, evaluation and checkpoints after an optimizer step; True
        when early stopping ends the run."""
        run = self.run
        cfg, st = run.cfg, run.state
        every = cfg.train.eval_every
        end_of_epoch = st.batches_in_epoch == run.batches_per_epoch
        if end_of_epoch:  # before any checkpoint, so a resume starts the next epoch
            st.epoch, st.batches_in_epoch = st.epoch + 1, 0
        if (every == "epoch" and end_of_epoch) or (isinstance(every, int) and st.step % every == 0):
            self._evaluate()
            self._checkpoint()
            return self.evaluation.stops_early()
        if cfg.train.checkpoint_every and st.step % cfg.train.checkpoint_every == 0:
            self._checkpoint()
        return False

    def _evaluate(self) -> None:
        self.phase = "evaluating"
        self.evaluation.evaluate()
        self.phase = "training"

    def _checkpoint(self) -> None:
        self.checkpoints.save(self.evaluation.last.get(self.run.watch))

    def _finish(self, status: str) -> Outcome:
        run = self.run
        st = run.state
        if status == "stopped":
            if st.step > run.start_step:  # no step, nothing new to keep
                self._checkpoint()
        elif self.evaluation.last_step != st.step:
            self._evaluate()
        if run.out_dir is not None and status == "completed" and run.accelerator.is_main_process:
            self.evaluation.restore_best()
            save_final(run)
        return Outcome(status, summary=self.summary())

    def _should_stop(self) -> bool:
        """The stop request, agreed by every process (only rank 0 reads the store).

        With several processes the flag is summed across them at each logging
        interval, not every step: one tiny all-reduce per interval is free.
        """
        run = self.run
        acc = run.accelerator
        if acc.num_processes == 1:
            return run.stop.is_set()
        if run.state.step % run.cfg.train.log_every != 0:
            return False
        flag = torch.tensor([int(run.stop.is_set())], device=acc.device)
        return bool(acc.reduce(flag, "sum").item())

    def out_of_memory(self) -> Outcome:
        """End the run as failed with reason OOM (in a step or an evaluation), and what
        would make it fit."""
        self.run.optimizer.zero_grad(set_to_none=True)
        return out_of_memory_outcome(self.run.cfg, self.phase, self.run.state.step,
                                     self.summary())

    def summary(self) -> dict:
        run = self.run
        st = run.state
        return {
            "steps": st.step,
            "epochs": round(st.step / run.steps_per_epoch, 3),
            "labels": list(run.data.labels),
            **self.evaluation.summary(),
            **run.task.baseline(run.data),
            # hf: data: the dataset id, subset, splits and the commit it was read at.
            **({"dataset": run.data.extra["dataset"]} if "dataset" in run.data.extra else {}),
        }


def out_of_memory_outcome(cfg: RunConfig, phase: str, step: int, summary: dict) -> Outcome:
    """A run that ran out of memory in `phase` (preparing, training or evaluating): failed
    with reason OOM, and what would make it fit."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    suggestions, error = out_of_memory_advice(cfg, phase, step)
    return Outcome("failed", summary={**summary, "failure_reason": "oom",
                                      "suggestions": suggestions}, error=error)


def out_of_memory_advice(cfg: RunConfig, phase: str, step: int) -> tuple[list[str], str]:
    """What would make a run that ran out of memory in `phase` fit, and the sentence
    that says where it ran out and the first suggestion."""
    t = cfg.train
    suggestions = []
    if t.batch_size > 1:
        suggestions.append(f"train.batch_size={t.batch_size // 2} "
                           f"train.grad_accumulation={t.grad_accumulation * 2} "
                           "(the same effective batch in half the memory)")
    if not t.gradient_checkpointing:
        suggestions.append("train.gradient_checkpointing=true (recompute activations)")
    if cfg.freeze.lora is None and cfg.freeze.policy in ("full", "freeze_embeddings"):
        suggestions.append("freeze.policy=freeze_first_n freeze.n=<half the blocks>, or "
                           "freeze.lora.r=8 (fewer gradients and optimizer state)")
    where = {"preparing": "while preparing the run (loading the model or caching features)",
             "evaluating": f"while evaluating at step {step}"}.get(phase, f"at step {step}")
    return suggestions, (f"Out of GPU memory {where} with batch size {t.batch_size}; fork the "
                         f"run with {suggestions[0] if suggestions else 'a smaller model'}.")


def train(
    cfg: RunConfig,
    emit: Callable[[Event], None],
    stop: threading.Event,
    *,
    out_dir: Path | None = None,
    resume_from: Path | None = None,
    rollbacks: Rollbacks | None = None,
) -> Outcome:
    """Fine-tune per cfg; returns when done, stopped or diverged.

    With `out_dir`, checkpoints go to `out_dir/checkpoints/` and the final
    model to `out_dir/model/`. `resume_from` continues from a checkpoint.
    `rollbacks` takes the watch rules' rollback requests (engine.training.rollback;
    by default the run makes its own when train.watch asks for rollbacks).
    """
    from engine.tasks import task_for

    if not task_for(cfg.head.task).trains:  # an embedding run computes, never trains
        from engine.training.embed import embed

        try:
            return embed(cfg, emit, stop, out_dir)
        except PreparationStopped:
            return _stopped_preparing(emit, None)
    try:
        try:
            run = RunSetup(cfg, emit, stop, out_dir).prepare(resume_from)
        except PreparationStopped:
            return _stopped_preparing(emit, resume_from)
        except torch.OutOfMemoryError:  # loading the model, caching features
            return out_of_memory_outcome(cfg, "preparing", 0, {"steps": 0})
        return TrainingLoop(run, rollbacks or rollbacks_for(cfg)).train()
    except RuntimeError as exc:
        if cfg.train.deterministic and "deterministic implementation" in str(exc):
            raise HubtuneError(no_deterministic_kernel(exc)) from None
        raise
    finally:
        if cfg.train.deterministic:  # a process-wide switch: put back for what runs next
            set_determinism(False)


def no_deterministic_kernel(exc: RuntimeError) -> str:
    """The sentence for torch's refusal of an operation that has no deterministic kernel
    (its message names the operation first, e.g. "upsample_bilinear2d_backward_out_cuda
    does not have a deterministic implementation, ...")."""
    op = str(exc).split(" does not have", 1)[0].strip().splitlines()[-1][:120]
    return (f"train.deterministic is on, but {op} has no deterministic kernel on this "
            "device; set train.deterministic=false (exact resume is then not guaranteed "
            "on a GPU).")


def _stopped_preparing(emit: Callable[[Event], None], resume_from: Path | None) -> Outcome:
    emit(Note("Stopped while preparing, before the first step"))
    step = 0
    if resume_from is not None and resume_from.name.removeprefix("step-").isdigit():
        step = int(resume_from.name.removeprefix("step-"))  # where a resume starts again
    return Outcome("stopped", summary={"steps": step})


