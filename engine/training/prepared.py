"""A prepared run: the parts setup (engine.training.setup) hands the training loop.

A plain record, as accelerate's examples keep their model, optimizer and loaders in
locals: the loop and its parts (progress, evaluation, checkpoints, rollbacks, gradual
unfreezing) read what they need from it. Two fields change while the run trains: `model`
(data parallel wraps it again when unfreezing opens parameters) and `state` (the loop's
position, changed in place). Nothing here steps, evaluates or saves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.config import RunConfig
from engine.core.events import Event
from engine.training.backends import SpeedSettings
from engine.training.checkpoint import LoopState
from engine.training.optim import OverflowSteps
from engine.training.unfreezing import Unfreezing


@dataclass(eq=False)
class PreparedRun:
    """A run ready for its first step."""

    cfg: RunConfig
    """The run's config, its token lengths fitted to the model's positions."""
    emit: Callable[[Event], None]
    """Where events go; does nothing on a rank other than 0 (one writer to the store)."""
    stop: threading.Event
    out_dir: Path | None
    """Checkpoints and the final model go under it; None: the run keeps neither."""
    accelerator: Any
    precision: str
    task: Any
    """The head's adapter (engine.tasks): evaluation, saving, baselines."""
    watch: str
    """The validation metric early stopping and 'best' follow."""
    processor: Any
    data: Any
    full_model: Any
    """The whole model with its head (on cached features the loop trains only the head)."""
    plain_model: Any
    """The module the optimizer steps, without data parallel or compile wrappers: its
    weight names are the same with and without compile, with one process or several
    (accelerate's unwrap leaves the compile wrapper inside data parallel in place, and
    its `_orig_mod.` names with it). Checkpoints and evaluations use it."""
    model: Any
    """The module as accelerate prepared it (data parallel, torch.compile): the steps'."""
    optimizer: Any
    scheduler: Any
    loader: Any
    sampler: Any
    collate: Any
    overflow: OverflowSteps
    """fp16 overflow steps, which the schedule must not follow."""
    unfreezing: Unfreezing
    cached: bool
    """The head trains on cached features of a frozen backbone."""
    frozen_backbone: bool
    val_features: Any
    """The cached validation features (cached runs only)."""
    speed: SpeedSettings
    batches_per_epoch: int
    """This process's batches an epoch (each process sees every N-th batch)."""
    steps_per_epoch: int
    total_steps: int
    state: LoopState
    """Where the run is: step, epoch, data position, early-stopping counts."""
    start_step: int = 0
    """The step this session began at (a resumed run's checkpoint)."""

    def train_mode(self) -> None:
        """Back to training mode; a frozen backbone stays in eval mode, so its dropout does
        not perturb the features the head learns from."""
        self.model.train()
        if self.frozen_backbone and not self.cached:
            from engine.modeling.freeze import backbone_of

            backbone_of(self.plain_model).eval()
