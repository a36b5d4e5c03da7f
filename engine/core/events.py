"""What a training run reports while it works, and what it returns.

Torch-free: the TUI and the store sink import these at module level. The
engine calls `emit(event)` with one of these; it never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESUMED = "Resumed from step"
"""How the note a resumed run gives once its checkpoint is loaded begins: a follower prints
progress only after it, since until then the store holds the earlier attempt's steps."""

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
    speed: dict[str, Any] = field(default_factory=dict)
    """The speed settings in force (engine.training.backends.SpeedSettings): TF32,
    attention kernel, data workers, compile, ...; what a benchmark prints beside its rate."""


@dataclass(frozen=True)
class StepLogged:
    """Training metrics averaged over the last logging interval."""

    step: int
    epoch: float
    metrics: dict[str, float]
    """loss, lr, samples_per_s, tokens_per_s, ..."""


STEP_METRIC = "step"
"""The metric a FirstStepTaken is recorded as (its value: the step), for step counters."""


@dataclass(frozen=True)
class FirstStepTaken:
    """The first optimizer step of a session (a start or a resume) is done, when it is
    not a logging step: the panel and `runs follow` count steps from it, not from the
    first `log_every` steps. Costs no device sync (no loss is read)."""

    step: int
    epoch: float


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


@dataclass(frozen=True)
class ValidationPredicted:
    """Per-example results of an evaluation whose model the run keeps: the best one
    (train.restore_best), else the newest. Each replaces the one before."""

    step: int
    examples: int
    """Validation examples evaluated; `rows` holds at most 20,000 of them."""
    loss_kind: str
    """What a row's loss is: cross_entropy, binary_cross_entropy, squared_error, chrf_gap."""
    rows: tuple[tuple[int, str, str, float | None, float], ...]
    """(index in the validation split, predicted, label, confidence, loss), highest loss
    first."""


WATCH_MARK = "(train.watch."
"""What every watch rule's event (and a rollback's) says, naming its key: how the runs list
counts a run's findings for its badge without a column of its own."""

ROLLED_BACK = "Rolled back"
"""How a rollback's event begins (a resumed run counts its earlier rollbacks by it)."""


@dataclass(frozen=True)
class RolledBack:
    """A watch rule's rollback (train.watch, action rollback): the run went back to a
    checkpoint with its learning rate lowered; the steps after it are replayed."""

    rule: str
    from_step: int
    to_step: int
    """The checkpoint's step: what was recorded after it is superseded."""
    learning_rate: float
    """The peak rate now (the first parameter group's)."""
    previous_rate: float
    count: int
    """This run's rollbacks so far, this one included."""
    limit: int
    factor: float
    detail: str = ""
    """What the loop itself saw (a loss that is no longer a number); empty for a watch
    rule, whose finding is its own event."""

    @property
    def message(self) -> str:
        return (f"{ROLLED_BACK} ({self.rule}, {self.count} of {self.limit}): "
                f"{self.detail + '; ' if self.detail else ''}from step {self.from_step} to the "
                f"checkpoint of step {self.to_step}, learning rate {self.previous_rate:.3g} -> "
                f"{self.learning_rate:.3g} (train.watch.rollback_lr_factor {self.factor:g}).")


Event = (RunPrepared | StepLogged | FirstStepTaken | EvalFinished | Note | CheckpointSaved
         | ValidationPredicted | RolledBack)


@dataclass(frozen=True)
class Outcome:
    """How `train` ended."""

    status: str
    """completed, stopped or failed."""
    summary: dict[str, Any] = field(default_factory=dict)
    """Final and best validation metrics, baselines, step counts."""
    error: str | None = None
