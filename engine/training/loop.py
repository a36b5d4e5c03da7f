"""The fine-tuning loop: data and model in, events out, an `Outcome` back.

Plain Python on accelerate. It never prints and never touches the store: the
worker turns its events into rows. The loss is accumulated on the device and
read only at the logging interval, because `.item()` each step forces a GPU
sync and stalls the pipeline. Checkpoints carry everything needed for a
resumed run to end with the same parameters as an uninterrupted one.

A stop request is honoured while the run prepares too (between reading,
tokenising in chunks, loading the model and caching features), not only
between steps: such a run ends as stopped with no step and no checkpoint.
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
from engine.core.errors import ConfigError, HubtuneError
from engine.core.events import (
    CheckpointSaved,
    EvalFinished,
    Event,
    Note,
    Outcome,
    RunPrepared,
    StepLogged,
)
from engine.data.loading import LengthGroupedBatches, PreparationStopped, stoppable
from engine.training.checkpoint import (
    LoopState,
    load_checkpoint,
    prune_checkpoints,
    rank_rng_state,
    save_checkpoint,
)
from engine.training.optim import lr_lambda, make_optimizer
from engine.training.precision import resolve_precision


def watched_metric(cfg: RunConfig, task) -> str:
    """The validation metric early stopping and 'best' follow; a name the task never
    reports is a ConfigError. `val_loss`, as the charts name it, reads as `loss`."""
    es = cfg.train.early_stopping
    if es is None or not es.metric:
        return task.watch
    known = task.metrics
    metric = es.metric
    if known is None:
        return metric
    if metric not in known and metric.removeprefix("val_") in known:
        metric = metric.removeprefix("val_")
    if metric not in known:
        raise ConfigError(f"train.early_stopping.metric {es.metric!r} is not reported by "
                          f"head.task {task.name}; use one of {', '.join(known)}.")
    return metric


@dataclass
class _Window:
    """Training readings since the last log line. The sums stay on the device: reading
    them (`float`) forces a sync, so it happens once per log line, not per step."""

    loss: torch.Tensor
    tokens: torch.Tensor
    batches: int = 0
    samples: int = 0
    started: float = field(default_factory=time.perf_counter)
    paused: float = 0.0
    """Seconds spent evaluating and checkpointing in the window, left out of the rates."""

    @classmethod
    def on(cls, device) -> _Window:
        return cls(torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long))

    def add(self, loss: torch.Tensor, batch: dict) -> None:
        self.loss += loss.detach()
        if "attention_mask" in batch:
            self.tokens += batch["attention_mask"].sum()
        self.batches += 1
        self.samples += len(next(iter(batch.values())))

    def reset(self) -> None:
        self.loss.zero_()
        self.tokens.zero_()
        self.batches = self.samples = 0
        self.started, self.paused = time.perf_counter(), 0.0

    def elapsed(self) -> float:
        return max(time.perf_counter() - self.started - self.paused, 1e-9)


class _Loop:
    """One training run's mutable state; `train` below is the public entry."""

    def __init__(self, cfg: RunConfig, emit: Callable[[Event], None], stop: threading.Event,
                 out_dir: Path | None) -> None:
        self.cfg = cfg
        self.emit = emit
        self.stop = stop
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.state = LoopState(step=0, epoch=0, batches_in_epoch=0, best_metric=None,
                               best_step=0, evals_without_gain=0)
        self.best: dict = {}
        self.last_eval: dict = {}
        self.last_eval_step = -1
        self.start_step = 0
        """The step this session began at (a resumed run's checkpoint)."""
        self.phase = "preparing"
        """What the run is doing, for the out-of-memory message: preparing, training
        or evaluating."""
        self.optimizer = None
        self.steps_per_epoch = 1

    # -- setup ---------------------------------------------------------------

    def prepare(self, resume_from: Path | None) -> None:
        """Everything before the first step, as named steps; a stop request is honoured
        between them (and while the data is tokenised)."""
        self._start_accelerator()
        self._stop_preparing()
        model_path = self._load_data()
        self._stop_preparing()
        model = self._build_model(model_path)
        self._stop_preparing()
        train_model, collate = self._batches(model)
        self._prepare_optimization(train_model, collate)
        self._restore(resume_from)
        self._stop_preparing()
        self._announce()

    def _start_accelerator(self) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
        from accelerate.utils import set_seed

        cfg = self.cfg
        set_seed(cfg.train.seed)
        self.precision = resolve_precision(cfg.train.precision)
        # accelerate keeps one precision per process and refuses a second; a process may
        # train several runs one after another (the benchmarks, the tests). The process
        # group (PartialState) stays.
        AcceleratorState._reset_state()
        from accelerate import DataLoaderConfiguration

        self.accelerator = Accelerator(
            # On a CPU-only box a `torchrun --nproc_per_node N` launch trains over gloo.
            cpu=not torch.cuda.is_available(),
            dataloader_config=DataLoaderConfiguration(non_blocking=torch.cuda.is_available()),
            mixed_precision=self.precision,
            gradient_accumulation_steps=cfg.train.grad_accumulation,
        )

    def _load_data(self) -> Path:
        """The task, its processor (tokenizer) and the data; returns the model's path."""
        cfg = self.cfg
        self.emit(Note(f"Loading {cfg.model.id}"))
        from engine.tasks import task_for

        self.task = task = task_for(cfg.head.task)
        # Checked before anything loads: a metric the task never reports would otherwise
        # end the run at its first evaluation, perhaps hours in.
        self.watch = watched_metric(cfg, task)
        # Labels decide the head's width, so the data is read before the model is built.
        self.processor, model_path = task.load_processor(cfg)
        if not task.vision:
            # A length beyond the model's positions would crash at the first long batch.
            self.cfg = cfg = self._fit(cfg, model_path)
        self._stop_preparing()
        from engine.training.data_cache import load_cached

        started = time.perf_counter()
        with stoppable(self.stop if self.accelerator.num_processes == 1 else None):
            self.data, hit = load_cached(task, cfg, self.processor,
                                         lambda: task.load_data(cfg, self.processor))
        if not task.vision:
            done = "Read the tokenised data from the cache" if hit else "Tokenised the data"
            self.emit(Note(f"{done} in {time.perf_counter() - started:.1f}s"))
        for warning in self.data.warnings:
            self.emit(Note(warning, level="warning"))
        if self.data.extra.get("skipped_files"):
            self.emit(Note(f"Left out {self.data.extra['skipped_files']} unreadable files "
                           "(data.bad_files: skip)", level="warning"))
        return model_path

    def _build_model(self, model_path: Path):
        """The model with its head, frozen as the plan says (LoRA adapters injected)."""
        cfg, task = self.cfg, self.task
        model = task.build(cfg, model_path, self.data)
        self._stop_preparing()
        from engine.modeling.freeze import apply_freeze, inject_lora, plan_freeze

        if cfg.freeze.lora is not None:
            targets = inject_lora(model, cfg.freeze.lora)
            self.emit(Note(f"LoRA adapters on {', '.join(targets)}"))
        self.plan = plan_freeze(model, cfg.freeze)
        self.stage = 0
        apply_freeze(model, self.plan)
        if cfg.freeze.policy != "full" or cfg.freeze.lora is not None:
            frozen = [g for g, t, f in self.plan.group_rows() if f and not t]
            self.emit(Note(f"Freezing ({cfg.freeze.policy}): {', '.join(frozen) or 'parts'}; "
                           f"{self.plan.trainable_count:,} parameters train"))
        if cfg.train.head_learning_rate is None and cfg.head_rate() != cfg.train.learning_rate:
            self.emit(Note(f"The head trains at {cfg.head_rate():g}, a linear-probe rate for a "
                           "frozen backbone; set train.head_learning_rate to choose another"))
        pooling = getattr(task, "pooling", None)
        self.emit(Note(f"{f'Pooling: {pooling}; ' if pooling else ''}{len(self.data.train)} "
                       f"training and {len(self.data.validation)} validation examples"))

        self.pad_id = task.pad_id(self.processor)
        self.full_model = model
        if cfg.train.gradient_checkpointing:
            from engine.modeling.freeze import backbone_of

            target = backbone_of(model)
            if not hasattr(target, "gradient_checkpointing_enable"):
                raise HubtuneError(f"{cfg.model.id} does not support gradient checkpointing; "
                                   "set train.gradient_checkpointing: false.")
            target.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False})
        return model

    def _batches(self, model):
        """The model the optimizer steps and the collator feeding it: the head on cached
        features for a frozen backbone, else the whole model on length-grouped batches."""
        cfg, task = self.cfg, self.task
        # A frozen backbone is a fixed feature extractor: keep it in eval mode so its
        # dropout does not perturb the features the head learns from.
        self.frozen_backbone = cfg.freeze.policy == "head_only" and cfg.freeze.lora is None
        self.cached = (self.frozen_backbone and cfg.train.cache_features
                       and hasattr(model, "pool"))
        if self.cached:
            from engine.training.features import (
                FeatureBatches,
                FeatureCollator,
                HeadOnFeatures,
                compute_features,
            )

            device = self.accelerator.device
            model.to(device)
            started = time.perf_counter()
            with self.accelerator.autocast():
                feats = {
                    split: compute_features(model, getattr(self.data, split), self.pad_id,
                                            cfg.train.batch_size * 2, device, task.float_labels)
                    for split in ("train", "validation")
                }
            self._stop_preparing()
            self.emit(Note(f"Cached frozen-backbone features of {len(self.data.train)} + "
                           f"{len(self.data.validation)} examples in "
                           f"{time.perf_counter() - started:.1f}s; training the head on them"))
            self.val_features = FeatureCollator(feats["validation"], self.data.validation.labels,
                                                task.float_labels)
            self.sampler = FeatureBatches(len(self.data.train), cfg.train.batch_size,
                                          cfg.train.seed)
            train_model = HeadOnFeatures(model)
            collate = FeatureCollator(feats["train"], self.data.train.labels, task.float_labels)
        else:
            self.sampler = LengthGroupedBatches(self.data.train.lengths, cfg.train.batch_size,
                                                cfg.train.seed)
            train_model = model
            collate = task.collator(self.data.train, self.processor, cfg, train=True)
        return train_model, collate

    def _data_workers(self) -> int:
        """train.data_workers, with `auto` resolved: images decode beside a GPU's steps
        (a core left for each training process); text batches are only padding, and on
        a CPU box the cores are training."""
        wanted = self.cfg.train.data_workers
        if wanted != "auto":
            return int(wanted)
        if self.cached or not self.task.vision or self.accelerator.device.type != "cuda":
            return 0
        import os

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        per_process = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        return max(0, min(8, per_process - 1))

    def _prepare_optimization(self, train_model, collate) -> None:
        """Loader, optimizer and schedule, handed to accelerate; the step counts."""
        cfg = self.cfg
        self.collate = collate
        workers = self._data_workers()
        cuda = self.accelerator.device.type == "cuda"
        loader = torch.utils.data.DataLoader(
            list(range(len(self.data.train))), batch_sampler=self.sampler, collate_fn=collate,
            # Each new iterator draws a seed from this generator; with the default (the
            # global RNG) a resumed run's dropout masks would drift from an unbroken run's.
            generator=torch.Generator().manual_seed(cfg.train.seed),
            # Page-locked batches copy to the GPU without blocking (the accelerator copies
            # with non_blocking), overlapping the next batch's copy with this step.
            pin_memory=cuda, num_workers=workers, prefetch_factor=4 if workers else None,
        )
        if workers:
            self.emit(Note(f"Reading batches in {workers} data worker processes"))
        optimizer = make_optimizer(
            train_model, cfg, None if self.cached else self.plan.ever_trainable)
        self.plain_model = train_model
        """The module the optimizer steps, without data parallel or compile wrappers."""
        if cfg.train.compile:
            # Dynamic shapes: with dynamic padding every batch has its own length.
            train_model = torch.compile(train_model, dynamic=True)
            self.emit(Note("Compiling the model with torch.compile (the first steps are slow)"))
        accum, processes = cfg.train.grad_accumulation, self.accelerator.num_processes
        # accelerate steps a prepared scheduler once per process for every optimizer step,
        # so its horizon counts the steps of a single process seeing all the data.
        horizon = math.ceil(cfg.train.epochs * max(1, -(-len(self.sampler) // accum)))
        if cfg.train.max_steps:
            horizon = min(horizon, cfg.train.max_steps * processes)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(horizon, int(cfg.train.warmup_ratio * horizon),
                                 cfg.train.scheduler)
        )
        self.model, self.optimizer, self.loader, self.scheduler = self.accelerator.prepare(
            train_model, optimizer, loader, scheduler
        )
        # Each process sees every N-th batch: its own epoch is len(loader) batches.
        self.batches_per_epoch = len(self.loader)
        self.steps_per_epoch = max(1, -(-self.batches_per_epoch // accum))
        total = math.ceil(cfg.train.epochs * self.steps_per_epoch)
        self.total_steps = min(total, cfg.train.max_steps) if cfg.train.max_steps else total
        if not self.accelerator.is_main_process:
            self.emit = lambda event: None  # only rank 0 reports, so the store has one writer
        if processes > 1:
            backend = getattr(self.accelerator.state, "backend", None) or "?"
            self.emit(Note(f"Data parallel over {processes} processes ({backend}); each sees "
                           f"{self.batches_per_epoch} of {len(self.sampler)} batches an epoch"))

    def _restore(self, resume_from: Path | None) -> None:
        if resume_from is not None:
            self.state = load_checkpoint(resume_from, self._unwrapped(), self.optimizer,
                                         self.scheduler, scaler=self.accelerator.scaler,
                                         rank=self.accelerator.process_index)
            self.emit(Note(f"Resumed from step {self.state.step} ({resume_from.name})"))
        self.start_step = self.state.step
        self._follow_schedule()
        self.phase = "training"

    def _announce(self) -> None:
        self.emit(RunPrepared(
            total_steps=self.total_steps,
            train_samples=len(self.data.train),
            validation_samples=len(self.data.validation),
            labels=tuple(self.data.labels),
            device=str(self.accelerator.device),
            precision=self.precision,
            trainable_params=sum(p.numel() for p in self.full_model.parameters()
                                 if p.requires_grad),
            total_params=sum(p.numel() for p in self.full_model.parameters()),
        ))

    # -- the loop --------------------------------------------------------------

    def run(self) -> Outcome:
        """Step through the epochs until done, stopped, early-stopped, diverged or out
        of memory (in a step or an evaluation)."""
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
                loss = self._step(batch)
                st.batches_in_epoch += 1
                window.add(loss, batch)
                if not acc.sync_gradients:
                    continue
                st.step += 1
                if self.plan.every_steps:
                    self._follow_schedule()
                if st.step % cfg.train.log_every == 0 or st.step == self.total_steps:
                    diverged = self._log(window)
                    if diverged is not None:
                        return diverged
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
            return Outcome("failed", summary={"steps": st.step}, error=(
                f"Training diverged (loss is {mean_loss}) at step {st.step}; "
                "lower train.learning_rate or keep max_grad_norm set."))
        elapsed = window.elapsed()
        self.emit(StepLogged(step=st.step, epoch=st.step / self.steps_per_epoch, metrics={
            "loss": mean_loss,
            "lr": self.scheduler.get_last_lr()[0],
            "samples_per_s": window.samples / elapsed,
            "tokens_per_s": float(window.tokens) / elapsed,
        }))
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
            if es is not None and st.evals_without_gain >= es.patience:
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
            self.restore_best()
            self.save_final()
        return Outcome(status, summary=self.summary())

    def restore_best(self) -> None:
        """Put back the weights of the best evaluation, from its (kept) checkpoint."""
        st = self.state
        self.model_step = st.step
        if not self.cfg.train.restore_best or st.best_metric is None or st.best_step == st.step:
            return
        best = self.out_dir / "checkpoints" / f"step-{st.best_step}" / "model.safetensors"
        if not best.is_file():
            self.emit(Note(f"The best checkpoint (step {st.best_step}) is gone; keeping the "
                           "last weights", level="warning"))
            return
        from safetensors.torch import load_model

        load_model(self._unwrapped(), str(best))
        self.model_step = st.best_step
        self.emit(Note(f"Restored the best weights: step {st.best_step}, {self.watch} "
                       f"{st.best_metric:.4g} (the last evaluation had "
                       f"{self.last_eval.get(self.watch, float('nan')):.4g})"))

    def _unwrapped(self):
        """The plain module: no DDP wrapper, no torch.compile wrapper (so weight names and
        checkpoints are the same with and without compile, with one process or several:
        accelerate's unwrap leaves the compile wrapper inside data parallel in place, and
        its `_orig_mod.` names with it)."""
        return self.plain_model

    def _fit(self, cfg: RunConfig, model_path: Path) -> RunConfig:
        """cfg with its token lengths clamped to the model's positions, each clamp noted."""
        from engine.modeling.lengths import fit_lengths

        cfg, clamped = fit_lengths(cfg, model_path)
        for limit in clamped:
            self.emit(Note(limit.notice, level="warning"))
        return cfg

    def _stop_preparing(self) -> None:
        """End the run now if a stop was requested while it prepares.

        With several processes the request is agreed at the first step instead
        (`_should_stop`): one process leaving early would hang the others in
        their first collective.
        """
        if self.accelerator.num_processes == 1 and self.stop.is_set():
            raise PreparationStopped

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

    def _step(self, batch) -> torch.Tensor:
        acc, cfg = self.accelerator, self.cfg
        with acc.accumulate(self.model):
            loss = self.model(**batch)[0]
            acc.backward(loss)
            if acc.sync_gradients and cfg.train.max_grad_norm:
                acc.clip_grad_norm_(self.model.parameters(), cfg.train.max_grad_norm)
            self.optimizer.step()
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
        t = self.cfg.train
        suggestions = []
        if t.batch_size > 1:
            suggestions.append(f"train.batch_size={t.batch_size // 2} "
                               f"train.grad_accumulation={t.grad_accumulation * 2} "
                               "(the same effective batch in half the memory)")
        if not t.gradient_checkpointing:
            suggestions.append("train.gradient_checkpointing=true (recompute activations)")
        if self.cfg.freeze.lora is None and self.cfg.freeze.policy in ("full",
                                                                      "freeze_embeddings"):
            suggestions.append("freeze.policy=freeze_first_n freeze.n=<half the blocks>, or "
                               "freeze.lora.r=8 (fewer gradients and optimizer state)")
        step = self.state.step
        where = {"preparing": "while preparing the run (loading the model or caching "
                              "features)",
                 "evaluating": f"while evaluating at step {step}"}.get(self.phase,
                                                                      f"at step {step}")
        summary = self.summary() if self.phase != "preparing" else {"steps": step}
        return Outcome("failed", summary={**summary, "failure_reason": "oom",
                                          "suggestions": suggestions}, error=(
            f"Out of GPU memory {where} with batch size {t.batch_size}; fork the run "
            f"with {suggestions[0] if suggestions else 'a smaller model'}."))

    def save_final(self) -> None:
        """The trained model, with LoRA folded in, as `out_dir/model`."""
        model = self.full_model  # in the cached-feature path self.model is only the head
        if self.cfg.freeze.lora is not None:
            from engine.modeling.freeze import merge_lora

            # The run is over: fold the adapters in place on the CPU rather than copy
            # the model on the GPU (twice the memory of the model at the very end).
            model = merge_lora(model.cpu())
        self.task.save(model, self.processor, self.data, self.cfg, self.out_dir / "model")

    def _follow_schedule(self) -> None:
        """Gradual unfreezing: open the stage this point of the run has reached."""
        from engine.modeling.freeze import apply_freeze

        stage = self.plan.stage_at(self.state.epoch, self.state.step)
        if stage == self.stage:
            return
        apply_freeze(self.full_model, self.plan, stage)
        self._rewrap()
        opened = [g for (g, t, _), (_, t0, _) in zip(
            self.plan.group_rows(self.plan.schedule[stage]),
            self.plan.group_rows(self.plan.schedule[self.stage]), strict=True) if t and not t0]
        count = sum(p.numel() for p in self.full_model.parameters() if p.requires_grad)
        self.emit(Note(f"Gradual unfreezing, stage {stage}: {', '.join(opened)} open; "
                       f"{count:,} parameters train"))
        self.stage = stage

    def _rewrap(self) -> None:
        """Wrap the model for data parallel again after its trainable parameters changed.

        DistributedDataParallel averages the gradients of the parameters that needed
        them when it wrapped the model, and of no others: a parameter gradual unfreezing
        opens later would train on each rank's own gradient, and the ranks' models would
        drift apart without a word. The new wrapper takes the same settings; the old
        one's gradient hooks go with it.
        """
        from torch.nn.parallel import DistributedDataParallel

        old = self.model
        if not isinstance(old, DistributedDataParallel):
            return
        old._remove_autograd_hooks()
        self.model = DistributedDataParallel(
            old.module, device_ids=old.device_ids, output_device=old.output_device,
            broadcast_buffers=old.broadcast_buffers,
            find_unused_parameters=old.find_unused_parameters,
            gradient_as_bucket_view=old.gradient_as_bucket_view)
        # accelerate keeps the models it prepared (for unwrap and save_state): the new
        # wrapper replaces the old one there too.
        models = self.accelerator._models
        self.accelerator._models = [self.model if m is old else m for m in models]

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
                metrics = self.task.evaluate(self._unwrapped(), self.data,
                                             self.processor, self.cfg, self.accelerator.device)
        self._train_mode()
        self.phase = "training"
        self.last_eval, self.last_eval_step = metrics, st.step
        self.emit(EvalFinished(step=st.step, epoch=st.step / self.steps_per_epoch, metrics={
            f"val_{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}))
        score = metrics.get(self.watch)
        if score is None:
            raise HubtuneError(
                f"train.early_stopping.metric {self.watch!r} is not computed for this task; use "
                f"one of {', '.join(k for k in metrics if k != 'confusion')}."
            )
        minimise = self.watch in self.task.minimise
        if st.best_metric is None or (score < st.best_metric if minimise else
                                      score > st.best_metric):
            st.best_metric, st.best_step, st.evals_without_gain = score, st.step, 0
            self.best = metrics
        else:
            st.evals_without_gain += 1

    def checkpoint(self) -> None:
        """Rank 0 writes the checkpoint; with several processes every rank first hands
        it its RNG states (a collective: every rank calls this at the same step)."""
        if self.out_dir is None:
            return
        acc, ranks = self.accelerator, None
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            ranks = gather_object([rank_rng_state()])
        if not acc.is_main_process:
            return
        st = self.state
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
            **{f"final_{k}": v for k, v in self.last_eval.items() if k != "confusion"},
            **{f"best_{k}": v for k, v in self.best.items() if k != "confusion"},
            "confusion": self.last_eval.get("confusion"),
            **self.task.baseline(self.data),
        }


def train(
    cfg: RunConfig,
    emit: Callable[[Event], None],
    stop: threading.Event,
    *,
    out_dir: Path | None = None,
    resume_from: Path | None = None,
) -> Outcome:
    """Fine-tune per cfg; returns when done, stopped or diverged.

    With `out_dir`, checkpoints go to `out_dir/checkpoints/` and the final
    model to `out_dir/model/`. `resume_from` continues from a checkpoint.
    """
    if cfg.head.task == "feature-extraction":
        try:
            return embed(cfg, emit, stop, out_dir)
        except PreparationStopped:
            return _stopped_preparing(emit, None)
    loop = _Loop(cfg, emit, stop, out_dir)
    try:
        loop.prepare(resume_from)
    except PreparationStopped:
        return _stopped_preparing(emit, resume_from)
    except torch.OutOfMemoryError:  # loading the model, caching features
        return loop.out_of_memory()
    return loop.run()


def _stopped_preparing(emit: Callable[[Event], None], resume_from: Path | None) -> Outcome:
    emit(Note("Stopped while preparing, before the first step"))
    step = 0
    if resume_from is not None and resume_from.name.removeprefix("step-").isdigit():
        step = int(resume_from.name.removeprefix("step-"))  # where a resume starts again
    return Outcome("stopped", summary={"steps": step})


def embed(cfg: RunConfig, emit: Callable[[Event], None], stop: threading.Event,
          out_dir: Path | None) -> Outcome:
    """The feature-extraction "run": no head, no training; embed the data with the
    checkpoint's own pooling and save the vectors (and the model, for predict)."""
    from engine.data.loading import check_text_column, pick_column, read_table, tokenise
    from engine.modeling.lengths import fit_lengths
    from engine.modeling.loading import build_model
    from engine.training.features import compute_features

    def check_stop() -> None:
        if stop.is_set():
            raise PreparationStopped

    check_stop()
    from engine.tasks import task_for

    # The task adapter's loader: the model is checked (damaged files, a head that does
    # not fit it) before its tokenizer loads.
    tokenizer, path = task_for(cfg.head.task).load_processor(cfg)
    cfg, clamped = fit_lengths(cfg, path)
    for limit in clamped:
        emit(Note(limit.notice, level="warning"))
    # The whole file in its own order (no split, no shuffled sample): row i of the
    # embeddings is row i of the file.
    data_path = cfg.resolve(cfg.data.train)
    frame = read_table(data_path, encoding=cfg.data.encoding)
    if cfg.data.limit is not None:
        frame = frame.head(cfg.data.limit)
    column = pick_column(frame, data_path, cfg.data.text_column, "text_column", ("sentence",))
    check_text_column(frame, data_path, column, "text_column")
    texts = ["" if not isinstance(t, str) else t for t in frame[column]]
    with stoppable(stop):
        enc = tokenise(tokenizer, texts, truncation=True, max_length=cfg.data.max_length,
                       return_attention_mask=False)
    from engine.data.loading import TextExamples

    examples = TextExamples(enc["input_ids"], None, [0] * len(texts))
    built = build_model(cfg.model, cfg.head, 1, path=path)
    check_stop()
    emit(Note(f"Embedding {len(texts)} texts from {column!r} with {built.pooling} pooling"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    built.model.to(device)
    started = time.perf_counter()
    vectors = compute_features(built.model, examples, tokenizer.pad_token_id or 0,
                               cfg.train.batch_size * 2, device, False).cpu()
    elapsed = time.perf_counter() - started
    emit(StepLogged(step=1, epoch=1.0, metrics={"samples_per_s": len(texts) / elapsed}))
    summary = {"examples": len(texts), "dimension": int(vectors.shape[1]),
               "pooling": built.pooling, "column": column}
    if out_dir is not None:
        from safetensors.torch import save_file

        from engine.modeling.export import save_model

        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": vectors.contiguous()}, str(out_dir / "embeddings.safetensors"))
        save_model(built.model, tokenizer, (), built.pooling, cfg, out_dir / "model")
        summary["file"] = str(out_dir / "embeddings.safetensors")
    return Outcome("completed", summary=summary)

