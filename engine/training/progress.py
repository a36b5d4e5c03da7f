"""A training run's progress readings: loss, rates and gradient norm summed on the device
over a logging interval, reported as one `StepLogged` at its end.

The sums stay on the device because `.item()` each step forces a GPU sync and stalls the
pipeline: they are read once per log line. With several processes the loss is the mean
over every rank, so all of them see the same number (and stop together when it is no
longer finite). Time spent evaluating and checkpointing is left out of the rates.
Never touches the store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from engine.core.events import FirstStepTaken, StepLogged


@dataclass
class Window:
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
    steps: int = 0
    """Optimizer steps ended in the window (a step may take several batches)."""
    started: float = field(default_factory=time.perf_counter)
    paused: float = 0.0
    """Seconds spent evaluating and checkpointing in the window, left out of the rates."""

    @classmethod
    def on(cls, device) -> Window:
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
        self.batches = self.samples = self.steps = 0
        self.started, self.paused = time.perf_counter(), 0.0

    def elapsed(self) -> float:
        return max(time.perf_counter() - self.started - self.paused, 1e-9)


class Progress:
    """The logging intervals of one prepared run (engine.training.prepared)."""

    def __init__(self, run) -> None:
        self.run = run
        self.window = Window.on(run.accelerator.device)

    def logs(self, step: int) -> bool:
        """Whether optimizer step `step` ends a logging interval."""
        return step % self.run.cfg.train.log_every == 0 or step == self.run.total_steps

    def mean_loss(self) -> float:
        """The interval's mean training loss, over every rank (one sync per interval)."""
        loss, acc = self.window.loss, self.run.accelerator
        if acc.num_processes > 1:
            loss = acc.reduce(loss.clone(), "mean")
        return float(loss) / self.window.batches

    def report(self, mean_loss: float) -> None:
        """Log the interval that ends now with its (finite) mean loss; start the next."""
        run, window = self.run, self.window
        step = run.state.step
        elapsed = window.elapsed()
        metrics = {"loss": mean_loss, "lr": run.scheduler.get_last_lr()[0],
                   "samples_per_s": window.samples / elapsed,
                   "steps_per_s": window.steps / elapsed}
        norm = float(window.norm)  # the device has synced for the loss: a cheap read
        if norm >= 0:  # a finite norm was taken (clipping on, or the interval's last step)
            metrics["grad_norm"] = norm
        if not run.task.vision:  # images have no tokens: no "0 tokens/s" to show
            metrics["tokens_per_s"] = float(window.tokens) / elapsed
        run.emit(StepLogged(step=step, epoch=step / run.steps_per_epoch, metrics=metrics))
        window.reset()

    def first_step(self) -> None:
        """The session's first optimizer step, when it ends no logging interval."""
        step = self.run.state.step
        self.run.emit(FirstStepTaken(step=step, epoch=step / self.run.steps_per_epoch))
