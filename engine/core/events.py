"""What a training run reports while it works, and what it returns.

Torch-free: the TUI and the store sink import these at module level. The
engine calls `emit(event)` with one of these; it never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RunPrepared:
    """Data and model are ready; training is about to start."""

    total_steps: int
    """Optimizer steps the run will take unless stopped early."""
    train_samples: int
    validation_samples: int
    labels: tuple[str, ...]
    device: str
    precision: str
    trainable_params: int
    total_params: int


@dataclass(frozen=True)
class StepLogged:
    """Training metrics averaged over the last logging interval."""

    step: int
    epoch: float
    metrics: dict[str, float]
    """loss, lr, samples_per_s, tokens_per_s, ..."""


@dataclass(frozen=True)
class EvalFinished:
    """A pass over the validation set."""

    step: int
    epoch: float
    metrics: dict[str, float]
    """Prefixed `val_`: val_loss, val_accuracy, val_macro_f1, ..."""


@dataclass(frozen=True)
class Note:
    """A line for the run's event log."""

    message: str
    level: str = "info"


@dataclass(frozen=True)
class CheckpointSaved:
    step: int
    path: str
    metric: float | None
    is_best: bool


Event = RunPrepared | StepLogged | EvalFinished | Note | CheckpointSaved


@dataclass(frozen=True)
class Outcome:
    """How `train` ended."""

    status: str
    """completed, stopped or failed."""
    summary: dict[str, Any] = field(default_factory=dict)
    """Final and best validation metrics, baselines, step counts."""
    error: str | None = None
