"""Everything a training run does before its first step, as named steps.

`RunSetup` starts accelerate, reads the data (through the tokenised-data cache),
builds the model with its head and freezing plan, picks the batches (cached
frozen-backbone features, or length-grouped batches through data workers), hands
model, optimizer, loader and schedule to accelerate, and restores a checkpoint. What it
hands on is a `PreparedRun` (engine.training.prepared), a plain record the training loop
(`engine.training.loop`) reads; the builder itself is not kept.

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
from engine.training.backends import (
    SpeedSettings,
    attention_implementation,
    set_determinism,
    set_tf32,
    use_channels_last,
)
from engine.training.checkpoint import LoopState, load_checkpoint
from engine.training.compat import reset_accelerator_state
from engine.training.optim import OverflowSteps, is_fused, lr_lambda, make_optimizer
from engine.training.precision import resolve_precision
from engine.training.prepared import PreparedRun
from engine.training.unfreezing import Unfreezing


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
    """Builds a run from its config up to the moment before the first step; `prepare`
    hands on the result. An exception out of `prepare` (out of memory, a stop) is one
    raised while preparing."""

    def __init__(self, cfg: RunConfig, emit: Callable[[Event], None], stop: threading.Event,
                 out_dir: Path | None) -> None:
        self.cfg = cfg
        self.emit = emit
        self.stop = stop
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.bucketed = None
        """The PadToBucket collator of a statically compiled text run."""
        self.channels_last = self.cudnn_benchmark = False

    def prepare(self, resume_from: Path | None) -> PreparedRun:
        """Everything before the first step, as named steps; a stop request is honoured
        between them (and while the data is tokenised)."""
        self._start_accelerator()
        self._stop_preparing()
        model_path = self._load_data()
        self._stop_preparing()
        model = self._build_model(model_path)
        self._stop_preparing()
        train_model, collate = self._batches(model, model_path)
        run = self._prepare_optimization(train_model, collate)
        self._restore(run, resume_from)
        self._stop_preparing()
        self._announce(run)
        return run

    def _start_accelerator(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        cfg = self.cfg
        # Before anything runs on the device: cuBLAS reads its workspace setting once.
        set_determinism(cfg.train.deterministic)
        set_seed(cfg.train.seed)
        self.precision = resolve_precision(cfg.train.precision)
        # accelerate keeps one precision per process and refuses a second; a process may
        # train several runs one after another (the benchmarks, the tests). The process
        # group (PartialState) stays.
        reset_accelerator_state()
        from accelerate import DataLoaderConfiguration

        self.accelerator = Accelerator(
            kwargs_handlers=ddp_settings(),
            # On a CPU-only box a `torchrun --nproc_per_node N` launch trains over gloo.
            cpu=not torch.cuda.is_available(),
            dataloader_config=DataLoaderConfiguration(non_blocking=torch.cuda.is_available()),
            mixed_precision=self.precision,
            gradient_accumulation_steps=cfg.train.grad_accumulation,
        )
        self.tf32 = set_tf32(cfg.train.tf32, self.accelerator.device.type)

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
        from engine.data.fingerprint import record_files
        from engine.training.data_cache import load_cached

        started = time.perf_counter()
        with stoppable(self.stop if self.accelerator.num_processes == 1 else None):
            self.data, hit = load_cached(task, cfg, self.processor,
                                         lambda: task.load_data(cfg, self.processor))
        if self.accelerator.is_main_process:  # what review checks the data against later
            record_files(self.data.extra, cfg)
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
        self.plan = plan = plan_freeze(model, cfg.freeze)
        apply_freeze(model, plan)
        if cfg.freeze.policy != "full" or cfg.freeze.lora is not None:
            frozen = [g for g, t, f in plan.group_rows() if f and not t]
            self.emit(Note(f"Freezing ({cfg.freeze.policy}): {', '.join(frozen) or 'parts'}; "
                           f"{plan.trainable_count:,} parameters train"))
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

    def _batches(self, model, model_path: Path | None = None):
        """The model the optimizer steps and the collator feeding it: the head on cached
        features for a frozen backbone, else the whole model on length-grouped batches."""
        cfg, task = self.cfg, self.task
        # A frozen backbone is a fixed feature extractor: keep it in eval mode so its
        # dropout does not perturb the features the head learns from.
        self.frozen_backbone = cfg.freeze.policy == "head_only" and cfg.freeze.lora is None
        self.cached = self.frozen_backbone and cfg.train.cache_features and (
            _image_cacheable(model, cfg) if task.vision else hasattr(model, "pool"))
        self.val_features = None
        if self.cached:
            started = time.perf_counter()
            self.val_features, self.sampler, train_model, collate, read = _cache_features(
                model, task, self.data, self.processor, self.pad_id, cfg, self.accelerator,
                model_path)
            self._stop_preparing()
            self.emit(Note(f"Cached frozen-backbone features of {len(self.data.train)} + "
                           f"{len(self.data.validation)} examples in "
                           f"{time.perf_counter() - started:.1f}s ({read}); training the head"))
        else:
            from engine.training.buckets import budget_batches

            self.sampler = (None if task.vision else budget_batches(cfg, self.data.train.lengths)
                            ) or LengthGroupedBatches(self.data.train.lengths,
                                                      cfg.train.batch_size, cfg.train.seed)
            train_model = model
            collate = task.collator(self.data.train, self.processor, cfg, train=True)
            if cfg.train.compile and cfg.train.compile_shapes == "static" and not task.vision:
                from engine.training.buckets import PadToBucket

                collate = self.bucketed = PadToBucket(collate, self.pad_id, cfg.data.max_length)
            self.channels_last, self.cudnn_benchmark = use_channels_last(
                model, self.accelerator.device.type, cfg.train.deterministic)
        return train_model, collate

    def _prepare_optimization(self, train_model, collate) -> PreparedRun:
        """Loader, optimizer and schedule, handed to accelerate; the step counts."""
        cfg = self.cfg
        from engine.training.loader import training_loader

        device_type = self.accelerator.device.type
        loader, collate, choice = training_loader(
            cfg, self.task.vision and not self.cached, device_type, len(self.data.train),
            self.sampler, collate, self.emit)
        optimizer = make_optimizer(
            train_model, cfg, None if self.cached else self.plan.ever_trainable)
        plain_model = train_model
        train_model = self._compile(train_model)
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
        model, optimizer, loader, scheduler = self.accelerator.prepare(
            train_model, optimizer, loader, scheduler
        )
        speed = SpeedSettings(
            device=device_type, tf32=self.tf32, deterministic=cfg.train.deterministic,
            channels_last=self.channels_last, cudnn_benchmark=self.cudnn_benchmark,
            attention=attention_implementation(self.full_model),
            fused_optimizer=is_fused(optimizer), data_workers=choice.workers,
            persistent_workers=choice.persistent, pin_memory=choice.pin_memory,
            max_tokens_per_batch=getattr(self.sampler, "budget", None), compile=self.compiled)
        # Each process sees every N-th batch: its own epoch is len(loader) batches.
        batches_per_epoch = len(loader)
        steps_per_epoch = max(1, -(-batches_per_epoch // accum))
        total = math.ceil(cfg.train.epochs * steps_per_epoch)
        if not self.accelerator.is_main_process:
            self.emit = lambda event: None  # only rank 0 reports, so the store has one writer
        if processes > 1:
            backend = getattr(self.accelerator.state, "backend", None) or "?"
            self.emit(Note(f"Data parallel over {processes} processes ({backend}); each sees "
                           f"{batches_per_epoch} of {len(self.sampler)} batches an epoch"))
        return PreparedRun(
            cfg=cfg, emit=self.emit, stop=self.stop, out_dir=self.out_dir,
            accelerator=self.accelerator, precision=self.precision, task=self.task,
            watch=self.watch, processor=self.processor, data=self.data,
            full_model=self.full_model, plain_model=plain_model, model=model,
            optimizer=optimizer, scheduler=scheduler, loader=loader, sampler=self.sampler,
            collate=collate, overflow=OverflowSteps(self.accelerator.scaler, optimizer),
            unfreezing=Unfreezing(self.plan), cached=self.cached,
            frozen_backbone=self.frozen_backbone, val_features=self.val_features,
            speed=speed, batches_per_epoch=batches_per_epoch, steps_per_epoch=steps_per_epoch,
            total_steps=min(total, cfg.train.max_steps) if cfg.train.max_steps else total,
            state=LoopState(step=0, epoch=0, batches_in_epoch=0, best_metric=None,
                            best_step=0, evals_without_gain=0))

    def _compile(self, train_model):
        """torch.compile the training model when train.compile asks (buckets.compile_model)."""
        from engine.training.buckets import compile_model

        train_model, self.compiled = compile_model(train_model, self.cfg, self.sampler,
                                                   self.bucketed, len(self.plan.schedule))
        if self.compiled != "off":
            self.emit(Note(f"Compiling the model with torch.compile ({self.compiled} shapes; "
                           "the first steps are slow)"))
        return train_model

    def _restore(self, run: PreparedRun, resume_from: Path | None) -> None:
        """A resumed run's checkpoint into the prepared parts, and its unfreezing stage."""
        if resume_from is not None:
            acc = run.accelerator
            run.state = load_checkpoint(resume_from, run.plain_model, run.optimizer,
                                        run.scheduler, scaler=acc.scaler,
                                        rank=acc.process_index)
            run.emit(Note(f"{RESUMED} {run.state.step} ({resume_from.name})"))
        run.start_step = run.state.step
        run.unfreezing.follow(run)

    def _announce(self, run: PreparedRun) -> None:
        model = run.full_model
        run.emit(RunPrepared(
            total_steps=run.total_steps,
            train_samples=len(run.data.train),
            validation_samples=len(run.data.validation),
            labels=tuple(run.data.labels),
            device=str(run.accelerator.device),
            precision=run.precision,
            trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
            total_params=sum(p.numel() for p in model.parameters()),
            speed=run.speed.to_dict(),
        ))
        run.emit(Note(run.speed.describe()))

    def _fit(self, cfg: RunConfig, model_path: Path) -> RunConfig:
        """cfg with its token lengths clamped to the model's positions, each clamp noted."""
        from engine.modeling.lengths import fit_lengths

        cfg, clamped = fit_lengths(cfg, model_path, self.task.length_keys)
        for limit in clamped:
            self.emit(Note(limit.notice, level="warning"))
        return cfg

    def _stop_preparing(self) -> None:
        """End the run now if a stop was requested while it prepares.

        With several processes the request is agreed at the first step instead
        (the loop's `_should_stop`): one process leaving early would hang the others in
        their first collective.
        """
        if self.accelerator.num_processes == 1 and self.stop.is_set():
            raise PreparationStopped


def ddp_settings() -> list:
    """accelerate's settings for data parallel: gradients kept as views into DDP's
    all-reduce buckets (one copy of them, not two), and the process group's raised
    timeout where accelerate starts it (engine.cluster.rendezvous says why)."""
    from datetime import timedelta

    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    from engine.cluster.rendezvous import PROCESS_GROUP_TIMEOUT_S

    return [DistributedDataParallelKwargs(gradient_as_bucket_view=True),
            InitProcessGroupKwargs(timeout=timedelta(seconds=PROCESS_GROUP_TIMEOUT_S))]


def _image_cacheable(model, cfg) -> bool:
    from engine.training.image_features import can_cache_image_features

    return can_cache_image_features(model, cfg)


def _cache_features(model, task, data, processor, pad_id, cfg, accelerator, model_path):
    """engine.training.features.cache_features, or its image form."""
    if task.vision:
        from engine.training.image_features import cache_image_features

        return cache_image_features(model, task, data, processor, cfg, accelerator, model_path)
    from engine.training.features import cache_features

    return cache_features(model, data, pad_id, cfg, accelerator, task.float_labels, model_path)
