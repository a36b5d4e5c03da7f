"""Everything a training run does before its first step, as named steps.

`RunSetup` starts accelerate, reads the data (through the tokenised-data cache),
builds the model with its head and freezing plan, picks the batches (cached
frozen-backbone features, or length-grouped batches through data workers), hands
model, optimizer, loader and schedule to accelerate, and restores a checkpoint. The
training loop (`engine.training.loop`) is its subclass and reads what it set up.

A stop request is honoured between the steps (and while the data is tokenised):
such a run ends as stopped with no step and no checkpoint.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from engine.core.config import RunConfig
from engine.core.errors import ConfigError, HubtuneError
from engine.core.events import RESUMED, Event, Note, RunPrepared
from engine.data.loading import LengthGroupedBatches, PreparationStopped, stoppable
from engine.training.checkpoint import LoopState, load_checkpoint
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


class RunSetup:
    """A run's state from its config to the moment before the first step."""

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
        for note in self.data.extra.get("notes", ()):  # hub data: which dataset, splits
            self.emit(Note(note))
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

    def _prepare_optimization(self, train_model, collate) -> None:
        """Loader, optimizer and schedule, handed to accelerate; the step counts."""
        cfg = self.cfg
        self.collate = collate
        loader_workers = data_workers(cfg.train.data_workers, self.task.vision and not self.cached,
                                      self.accelerator.device.type)
        cuda = self.accelerator.device.type == "cuda"
        loader = torch.utils.data.DataLoader(
            list(range(len(self.data.train))), batch_sampler=self.sampler, collate_fn=collate,
            # Each new iterator draws a seed from this generator; with the default (the
            # global RNG) a resumed run's dropout masks would drift from an unbroken run's.
            generator=torch.Generator().manual_seed(cfg.train.seed),
            # Page-locked batches copy to the GPU without blocking (the accelerator copies
            # with non_blocking), overlapping the next batch's copy with this step.
            pin_memory=cuda, num_workers=loader_workers,
            prefetch_factor=4 if loader_workers else None,
        )
        if loader_workers:
            self.emit(Note(f"Reading batches in {loader_workers} data worker processes"))
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
            self.emit(Note(f"{RESUMED} {self.state.step} ({resume_from.name})"))
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

    def _unwrapped(self):
        """The plain module: no DDP wrapper, no torch.compile wrapper (so weight names and
        checkpoints are the same with and without compile, with one process or several:
        accelerate's unwrap leaves the compile wrapper inside data parallel in place, and
        its `_orig_mod.` names with it)."""
        return self.plain_model

    def _follow_schedule(self) -> None:
        """Gradual unfreezing: open the stage this point of the run has reached."""
        from engine.modeling.freeze import apply_freeze

        stage = self.plan.stage_at(self.state.epoch, self.state.step)
        if stage == self.stage:
            return
        apply_freeze(self.full_model, self.plan, stage)
        rewrap(self.accelerator, self)
        opened = [g for (g, t, _), (_, t0, _) in zip(
            self.plan.group_rows(self.plan.schedule[stage]),
            self.plan.group_rows(self.plan.schedule[self.stage]), strict=True) if t and not t0]
        count = sum(p.numel() for p in self.full_model.parameters() if p.requires_grad)
        self.emit(Note(f"Gradual unfreezing, stage {stage}: {', '.join(opened)} open; "
                       f"{count:,} parameters train"))
        self.stage = stage


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


def rewrap(accelerator, run) -> None:
    """Wrap `run.model` for data parallel again after its trainable parameters changed.

    DistributedDataParallel averages the gradients of the parameters that needed them
    when it wrapped the model, and of no others: a parameter gradual unfreezing opens
    later would train on each rank's own gradient, and the ranks' models would drift
    apart without a word. The new wrapper takes the same settings; the old one's
    gradient hooks go with it.
    """
    from torch.nn.parallel import DistributedDataParallel

    old = run.model
    if not isinstance(old, DistributedDataParallel):
        return
    old._remove_autograd_hooks()
    run.model = DistributedDataParallel(
        old.module, device_ids=old.device_ids, output_device=old.output_device,
        broadcast_buffers=old.broadcast_buffers,
        find_unused_parameters=old.find_unused_parameters,
        gradient_as_bucket_view=old.gradient_as_bucket_view)
    # accelerate keeps the models it prepared (for unwrap and save_state): the new wrapper
    # replaces the old one there too.
    accelerator._models = [run.model if m is old else m for m in accelerator._models]
