"""The fine-tuning loop: a prepared run in, events out, an `Outcome` back.

Plain Python on accelerate. It never prints and never touches the store: the
run's worker process (engine.launch.worker) turns its events into rows. The loss is accumulated on the device and
read only at the logging interval, because `.item()` each step forces a GPU
sync and stalls the pipeline. Checkpoints carry everything needed for a
resumed run to end with the same parameters as an uninterrupted one. What
happens before the first step is `engine.training.setup`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.core.config import RunConfig
from engine.core.errors import HubtuneError
from engine.core.events import (
    CheckpointSaved,
    EvalFinished,
    Event,
    FirstStepTaken,
    Note,
    Outcome,
    StepLogged,
    ValidationPredicted,
)
from engine.data.loading import PreparationStopped
from engine.training.backends import set_determinism
from engine.training.checkpoint import prune_checkpoints, rank_rng_state, save_checkpoint
from engine.training.rollback import (
    Rollbacks,
    non_finite_rollback,
    roll_back_if_asked,
    rollbacks_for,
)
from engine.training.setup import RunSetup


@dataclass
class _Window:
    """Training readings since the last log line. The sums stay on the device: reading
    them (`float`) forces a sync, so it happens once per log line, not per step."""

    loss: torch.Tensor
    tokens: torch.Tensor
    norm: torch.Tensor
    """The largest finite gradient norm of the window's steps, -1 before one (an fp16
    overflow step's infinite norm is skipped, as its step is; a diverged step's is left
    to the loss check)."""
    batches: int = 0
    samples: int = 0
    started: float = field(default_factory=time.perf_counter)
    paused: float = 0.0
    """Seconds spent evaluating and checkpointing in the window, left out of the rates."""

    @classmethod
    def on(cls, device) -> _Window:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long),
                   torch.full((), -1.0, device=device))

    def add(self, loss: torch.Tensor, batch: dict, norm: torch.Tensor | None = None) -> None:
        self.loss += loss.detach()
        if norm is not None:
            finite = torch.nan_to_num(norm.detach().float(), nan=-1.0, posinf=-1.0)
            torch.maximum(self.norm, finite, out=self.norm)
        if "attention_mask" in batch:
            self.tokens += batch["attention_mask"].sum()
        self.batches += 1
        self.samples += len(next(iter(batch.values())))

    def reset(self) -> None:
        self.loss.zero_()
        self.tokens.zero_()
        self.norm.fill_(-1.0)
        self.batches = self.samples = 0
        self.started, self.paused = time.perf_counter(), 0.0

    def elapsed(self) -> float:
        return max(time.perf_counter() - self.started - self.paused, 1e-9)


class _Loop(RunSetup):
    """One training run's steps, evaluations and checkpoints; `train` below is the
    public entry."""

    rollbacks: Rollbacks | None = None
    """The watch rules' rollback requests (engine.training.rollback); None: none asked."""
    step_norm: torch.Tensor | None = None
    """The gradient norm `_step` took (a device tensor), else None."""

    def run(self) -> Outcome:
        """Step through the epochs until done, stopped, early-stopped, diverged or out
        of memory (in a step or an evaluation)."""
        from engine.training.ranks import check_same_data

        check_same_data(self)  # several ranks: the same data and steps, or a sentence
        try:
            return self._epochs()
        except torch.OutOfMemoryError:
            return self.out_of_memory()

    def _epochs(self) -> Outcome:
        cfg, st, acc = self.cfg, self.state, self.accelerator
        window = _Window.on(acc.device)
        self._train_mode()
        status = "completed"
        done = st.step >= self.total_steps
        while not done:
            # The loader too: with one process accelerate re-sets the sampler's epoch from
            # its own counter on every pass (which restarts at 0 in a resumed run); with
            # several it never reaches the sampler inside its shard.
            self.sampler.set_epoch(st.epoch)
            if hasattr(self.collate, "set_epoch"):  # per-epoch augmentation seeds
                self.collate.set_epoch(st.epoch)
            self.loader.set_epoch(st.epoch)
            loader = self.loader
            if st.batches_in_epoch:
                # A resumed run's data position, in this process's own batches: skipped
                # after sharding, so each rank sees what it would have seen unbroken.
                loader = acc.skip_first_batches(self.loader, st.batches_in_epoch)
            self._follow_schedule()
            for batch in loader:
                if st.batches_in_epoch % cfg.train.grad_accumulation == 0 and self._should_stop():
                    status, done = "stopped", True
                    break
                self.step_norm = None
                loss = self._step(batch)
                st.batches_in_epoch += 1
                window.add(loss, batch, self.step_norm)
                if not acc.sync_gradients:
                    continue
                st.step += 1
                if self.plan.every_steps:
                    self._follow_schedule()
                if self._logs(st.step):
                    diverged = self._log(window)
                    if diverged is not None:
                        return diverged
                elif st.step == self.start_step + 1:
                    self.emit(FirstStepTaken(step=st.step, epoch=st.step / self.steps_per_epoch))
                if self.rollbacks is not None and roll_back_if_asked(self):
                    window.reset()  # the restored data position: its epoch starts again
                    break
                paused = time.perf_counter()
                ended = self._after_step()
                window.paused += time.perf_counter() - paused
                if ended or st.step >= self.total_steps:
                    done = True
                    break
        return self._finish(status)

    def _log(self, window: _Window) -> Outcome | None:
        """Report the readings since the last log line; a failed Outcome if the loss
        is no longer a number."""
        st = self.state
        loss = window.loss
        if self.accelerator.num_processes > 1:
            # The mean over every rank: all of them see the same number, so all of them
            # stop together when it is no longer finite.
            loss = self.accelerator.reduce(loss.clone(), "mean")
        mean_loss = float(loss) / window.batches  # one sync per interval
        if not math.isfinite(mean_loss):
            if non_finite_rollback(self, mean_loss):
                window.reset()
                return None
            return Outcome("failed", summary={"steps": st.step}, error=(
                f"Training diverged (loss is {mean_loss}) at step {st.step}; "
                "lower train.learning_rate or keep max_grad_norm set."))
        elapsed = window.elapsed()
        metrics = {"loss": mean_loss, "lr": self.scheduler.get_last_lr()[0],
                   "samples_per_s": window.samples / elapsed}
        norm = float(window.norm)  # the device has synced above: a cheap read
        if norm >= 0:  # a finite norm was taken (clipping on, or the interval's last step)
            metrics["grad_norm"] = norm
        if not self.task.vision:  # images have no tokens: no "0 tokens/s" to show
            metrics["tokens_per_s"] = float(window.tokens) / elapsed
        self.emit(StepLogged(step=st.step, epoch=st.step / self.steps_per_epoch,
                             metrics=metrics))
        window.reset()
        return None

    def _after_step(self) -> bool:
        """Epoch bookkeeping, evaluation and checkpoints after an optimizer step; True
        when early stopping ends the run."""
        cfg, st = self.cfg, self.state
        every = cfg.train.eval_every
        end_of_epoch = st.batches_in_epoch == self.batches_per_epoch
        if end_of_epoch:  # before any checkpoint, so a resume starts the next epoch
            st.epoch, st.batches_in_epoch = st.epoch + 1, 0
        if (every == "epoch" and end_of_epoch) or (isinstance(every, int) and st.step % every == 0):
            self.evaluate()
            self.checkpoint()
            es = cfg.train.early_stopping
            from engine.training.ranks import decided_by_rank_0

            if decided_by_rank_0(self.accelerator,
                                 es is not None and st.evals_without_gain >= es.patience):
                self.emit(Note(f"Early stopping: no gain in {self.watch} for "
                               f"{st.evals_without_gain} evaluations"))
                return True
        elif cfg.train.checkpoint_every and st.step % cfg.train.checkpoint_every == 0:
            self.checkpoint()
        return False

    def _finish(self, status: str) -> Outcome:
        st = self.state
        if status == "stopped":
            if st.step > self.start_step:  # no step, nothing new to keep
                self.checkpoint()
        elif self.last_eval_step != st.step:
            self.evaluate()
        if self.out_dir is not None and status == "completed" and self.accelerator.is_main_process:
            restore_best(self)
            self.save_final()
        return Outcome(status, summary=self.summary())

    def _should_stop(self) -> bool:
        """The stop request, agreed by every process (only rank 0 reads the store).

        With several processes the flag is summed across them at each logging
        interval, not every step: one tiny all-reduce per interval is free.
        """
        acc = self.accelerator
        if acc.num_processes == 1:
            return self.stop.is_set()
        if self.state.step % self.cfg.train.log_every != 0:
            return False
        flag = torch.tensor([int(self.stop.is_set())], device=acc.device)
        return bool(acc.reduce(flag, "sum").item())

    def _logs(self, step: int) -> bool:
        """Whether optimizer step `step` ends a logging interval."""
        return step % self.cfg.train.log_every == 0 or step == self.total_steps

    def _step(self, batch) -> torch.Tensor:
        acc, cfg = self.accelerator, self.cfg
        with acc.accumulate(self.model):
            loss = self.model(**batch)[0]
            acc.backward(loss)
            if acc.sync_gradients:
                # With clipping the norm comes free; without, it costs a pass over the
                # gradients: taken on the interval's last step only (`grad_norm`).
                norm = cfg.train.max_grad_norm or (math.inf if self._logs(self.state.step + 1)
                                                   else None)
                if norm is not None:
                    self.step_norm = acc.clip_grad_norm_(self.model.parameters(), norm)
            self.overflow.before_step()
            self.optimizer.step()
            # An fp16 overflow skips the step: the schedule must not move either.
            if not self.overflow.skipped(acc.sync_gradients):
                self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss

    def out_of_memory(self) -> Outcome:
        """End the run as failed with reason OOM (in a step, an evaluation, feature
        caching or preparation), and what would make it fit."""
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        step = self.state.step
        summary = self.summary() if self.phase != "preparing" else {"steps": step}
        suggestions, error = out_of_memory_advice(self.cfg, self.phase, step)
        return Outcome("failed", summary={**summary, "failure_reason": "oom",
                                          "suggestions": suggestions}, error=error)

    def save_final(self) -> None:
        """The trained model, with LoRA folded in, as `out_dir/model`."""
        model = self.full_model  # in the cached-feature path self.model is only the head
        if self.cfg.freeze.lora is not None:
            from engine.modeling.freeze import merge_lora

            # The run is over: fold the adapters in place on the CPU rather than copy
            # the model on the GPU (twice the memory of the model at the very end).
            model = merge_lora(model.cpu())
        self.task.save(model, self.processor, self.data, self.cfg, self.out_dir / "model")

    def _train_mode(self) -> None:
        self.model.train()
        if self.frozen_backbone and not self.cached:
            from engine.modeling.freeze import backbone_of

            backbone_of(self._unwrapped()).eval()

    def evaluate(self) -> None:
        st = self.state
        self.phase = "evaluating"
        # Under the training autocast: the unwrapped model (and, with torch.compile,
        # the original module) no longer carries accelerate's autocast forward.
        with self.accelerator.autocast():
            if self.cached:
                from engine.tasks.evaluate import evaluate_features

                metrics = evaluate_features(self.model, self.val_features, self.cfg,
                                            len(self.data.labels))
            else:
                from engine.tasks.eval_shards import sharded

                # Each rank evaluates its share of the batches; all get the same metrics.
                with sharded(self.accelerator.process_index, self.accelerator.num_processes):
                    metrics = self.task.evaluate(self._unwrapped(), self.data, self.processor,
                                                 self.cfg, self.accelerator.device)
        self._train_mode()
        self.phase = "training"
        examples = metrics.pop("examples", None)
        self.last_eval, self.last_eval_step = metrics, st.step
        self.emit(EvalFinished(step=st.step, epoch=st.step / self.steps_per_epoch, metrics={
            f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}))
        score = metrics.get(self.watch)
        if score is None:
            raise HubtuneError(
                f"train.early_stopping.metric {self.watch!r} is not computed for this task; use "
                f"one of {', '.join(k for k, v in metrics.items() if _scalar(v))}."
            )
        minimise = self.watch in self.task.minimise
        improved = st.best_metric is None or (score < st.best_metric if minimise else
                                              score > st.best_metric)
        if improved:
            st.best_metric, st.best_step, st.evals_without_gain = score, st.step, 0
            self.best = metrics
        else:
            st.evals_without_gain += 1
        # The rows review reads describe the model the run ends with (see restore_best).
        if examples is not None and (improved or not self.cfg.train.restore_best):
            _record_examples(self, examples, getattr(examples, "total", None)
                             or len(self.data.validation))

    def checkpoint(self) -> None:
        """Rank 0 writes the checkpoint; with several processes every rank first hands
        it its RNG states (a collective: every rank calls this at the same step)."""
        if self.out_dir is None:
            return
        acc, ranks = self.accelerator, None
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            ranks = gather_object([rank_rng_state()])
        if acc.is_main_process:
            self._save_checkpoint(ranks)
        if acc.num_processes > 1:
            # The other ranks wait here, not in the next step's all-reduce, while rank 0
            # writes and the store commits (within the raised process-group timeout).
            acc.wait_for_everyone()

    def _save_checkpoint(self, ranks) -> None:
        acc, st = self.accelerator, self.state
        folder = save_checkpoint(self.out_dir / "checkpoints" / f"step-{st.step}",
                                 self._unwrapped(), self.optimizer, self.scheduler, st,
                                 scaler=acc.scaler, ranks=ranks)
        self.emit(CheckpointSaved(step=st.step, path=str(folder),
                                  metric=self.last_eval.get(self.watch),
                                  is_best=st.best_step == st.step))
        # Only after the new one is recorded: until then the previous one is the resume point.
        prune_checkpoints(self.out_dir, self.cfg.train.keep_checkpoints,
                          protect=st.best_step if st.best_metric is not None else None)

    def summary(self) -> dict:
        st = self.state
        return {
            "steps": st.step,
            "epochs": round(st.step / self.steps_per_epoch, 3),
            "labels": list(self.data.labels),
            "watched_metric": self.watch,
            "best_step": st.best_step,
            "model_step": getattr(self, "model_step", st.step),
            "kept_eval": _kept_prefix(self),  # whose metrics are the run's result
            **{f"final_{k}": v for k, v in self.last_eval.items() if _scalar(v)},
            **{f"best_{k}": v for k, v in self.best.items() if _scalar(v)},
            # Of the evaluation whose model the run keeps (restore_best), like review's rows.
            "class_report": self._kept_eval().get("class_report"),
            **self.task.baseline(self.data),
            # hf: data: the dataset id, subset, splits and the commit it was read at.
            **({"dataset": self.data.extra["dataset"]} if "dataset" in self.data.extra else {}),
        }

    def _kept_eval(self) -> dict:
        return self.best if _kept_prefix(self) == "best" else self.last_eval


def restore_best(loop: _Loop) -> None:
    """Put back the weights of the best evaluation, from its (kept) checkpoint."""
    st = loop.state
    loop.model_step = st.step
    if not loop.cfg.train.restore_best or st.best_metric is None or st.best_step == st.step:
        return
    best = loop.out_dir / "checkpoints" / f"step-{st.best_step}" / "model.safetensors"
    if not best.is_file():
        loop.emit(Note(f"The best checkpoint (step {st.best_step}) is gone; keeping the "
                       "last weights", level="warning"))
        return
    from safetensors.torch import load_model

    load_model(loop._unwrapped(), str(best))
    loop.model_step = st.best_step
    loop.emit(Note(f"Restored the best weights: step {st.best_step}, {loop.watch} "
                   f"{st.best_metric:.4g} (the last evaluation had "
                   f"{loop.last_eval.get(loop.watch, float('nan')):.4g})"))


def _record_examples(loop: _Loop, examples, total: int) -> None:
    if not loop.accelerator.is_main_process:
        return
    loop.emit(ValidationPredicted(step=loop.state.step, examples=total,
                                  loss_kind=examples.loss_kind,
                                  rows=tuple(examples.rows(loop.data.labels))))


def _kept_prefix(loop: _Loop) -> str:
    """'best' when the model the run keeps is its best evaluation's (train.restore_best),
    else 'final' (its last evaluation's): which of the summary's metrics are its result."""
    st = loop.state
    if not loop.best or st.best_metric is None:
        return "final"
    if hasattr(loop, "model_step"):  # restore_best ran: the weights the run ended with
        return "best" if loop.model_step == st.best_step else "final"
    return "best" if loop.cfg.train.restore_best else "final"


def _scalar(value) -> bool:
    """A metric that goes into the summary as final_/best_ (not a report or a table)."""
    return not isinstance(value, (dict, list, tuple))


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
    loop = _Loop(cfg, emit, stop, out_dir)
    loop.rollbacks = rollbacks or rollbacks_for(cfg)
    try:
        try:
            loop.prepare(resume_from)
        except PreparationStopped:
            return _stopped_preparing(emit, resume_from)
        except torch.OutOfMemoryError:  # loading the model, caching features
            return loop.out_of_memory()
        return loop.run()
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


