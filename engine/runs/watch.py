"""A run watching its own curves (`train.watch`): rules over the readings its worker
records, each saying in numbers what it saw, and noting it or stopping the run.

Plain Python over the metrics of StepLogged and EvalFinished events and the GPU
readings the worker's store thread takes; no torch. Non-finite losses are not here:
the training loop stops (or rolls back) on those itself. A finding names the newest
step whose weights are still trusted (`good_step`), where a `rollback` goes back to
(engine.training.rollback does it).
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

from engine.core.config import WatchRule, WatchSpec, lower_is_better

IDLE_UTIL_PERCENT = 5.0
"""A GPU this busy or less counts as idle."""


@dataclass(frozen=True)
class Finding:
    rule: str
    action: str
    message: str
    good_step: int = 0
    """The newest step before what the rule saw: a rollback goes back to the newest
    checkpoint at or before it."""


def _threshold(rule: WatchRule, default: float) -> float:
    return default if rule.threshold is None else float(rule.threshold)


def _window(rule: WatchRule, default: int) -> int:
    return default if rule.window is None else int(rule.window)


class Watcher:
    """Feeds readings in; each call returns the rules that fired (each fires once, until
    the condition clears and comes back)."""

    def __init__(self, spec: WatchSpec, *, plateau_metric: str | None = None) -> None:
        self.spec = spec
        self.plateau_metric = plateau_metric or "val_loss"
        self._losses: deque[float] = deque(maxlen=_window(spec.loss_spike, 20)
                                           if spec.loss_spike else 20)
        self._norms: deque[float] = deque(maxlen=_window(spec.grad_norm, 20)
                                          if spec.grad_norm else 20)
        self._logged = 0
        """The step of the reading before this one. The weights after it already made
        the next interval's first loss, so a spike trusts only those of the step before."""
        self._speeds: deque[float] = deque(maxlen=_window(spec.slowdown, 20)
                                           if spec.slowdown else 20)
        self._evals: list[tuple[int, dict[str, float]]] = []
        self._train_loss_at_eval: list[float] = []
        self._firing: set[str] = set()
        self._idle_since: float | None = None
        self._last_loss = float("nan")
        self._training = False
        """A step has been logged: before it (a download, tokenising) the GPU is idle by
        design, and not a finding."""

    def _fire(self, name: str, rule: WatchRule, on: bool, message: str,
              good_step: int = 0) -> list[Finding]:
        if not on:
            self._firing.discard(name)
            return []
        if name in self._firing:
            return []
        self._firing.add(name)
        return [Finding(name, rule.action, message, good_step)]

    def _spike(self, name: str, what: str, step: int, value: float | None,
               history: deque[float], default: float) -> list[Finding]:
        """`value` over `threshold` times the median of its recent readings."""
        rule = getattr(self.spec, name)
        if rule is None or value is None:
            return []
        factor = _threshold(rule, default)
        median = statistics.median(history) if len(history) >= 3 else None
        spike = median is not None and median > 0 and value > factor * median
        seen = len(history)
        history.append(value)
        return self._fire(name, rule, spike,
                          f"{what} at step {step}: {value:.4g}, {value / median:.1f}x "
                          f"the median {median:.4g} of the last {seen} "
                          f"readings (train.watch.{name}: over {factor:g}x)."
                          if spike else "", good_step=max(self._logged - 1, 0))

    def step(self, step: int, metrics: dict[str, float]) -> list[Finding]:
        self._training = True
        loss, speed = metrics.get("loss"), metrics.get("samples_per_s")
        found = [*self._spike("loss_spike", "Loss spike", step, loss, self._losses, 5.0),
                 *self._spike("grad_norm", "Gradient norm blow-up", step,
                              metrics.get("grad_norm"), self._norms, 10.0)]
        self._logged = step
        if loss is not None:
            self._last_loss = loss
        rule = self.spec.slowdown
        if rule is not None and speed is not None:
            fraction = _threshold(rule, 0.5)
            median = statistics.median(self._speeds) if len(self._speeds) >= 3 else None
            slow = median is not None and speed < fraction * median
            found += self._fire("slowdown", rule, slow,
                                f"Slowdown at step {step}: {speed:.4g} samples/s, "
                                f"{speed / median:.0%} of the run's median {median:.4g} "
                                f"(train.watch.slowdown: under {fraction:.0%})."
                                if slow else "")
            self._speeds.append(speed)
        return found

    def evaluation(self, step: int, metrics: dict[str, float]) -> list[Finding]:
        self._evals.append((step, metrics))
        self._train_loss_at_eval.append(self._last_loss)
        return [*self._plateau(step), *self._overfit(step)]

    def _plateau(self, step: int) -> list[Finding]:
        rule = self.spec.plateau
        name = self.plateau_metric
        steps = [s for s, m in self._evals if name in m]
        values = [m[name] for _, m in self._evals if name in m]
        if rule is None or not values:
            return []
        patience = _window(rule, 3)
        lower = lower_is_better(name)
        best_at = (values.index(min(values)) if lower else values.index(max(values)))
        stalled = len(values) - 1 - best_at
        on = stalled >= patience
        return self._fire("plateau", rule, on,
                          f"Plateau at step {step}: {name} has not beaten its best "
                          f"{values[best_at]:.4g} for {stalled} evaluations "
                          f"(train.watch.plateau: {patience})." if on else "",
                          good_step=steps[best_at])

    def _overfit(self, step: int) -> list[Finding]:
        rule = self.spec.overfit
        if rule is None:
            return []
        k = _window(rule, 3)
        val = [m.get("val_loss") for _, m in self._evals][-(k + 1):]
        train = self._train_loss_at_eval[-(k + 1):]
        on = (len(val) == k + 1 and None not in val
              and all(b > a for a, b in zip(val, val[1:], strict=False))
              and all(b < a for a, b in zip(train, train[1:], strict=False)))
        return self._fire("overfit", rule, on,
                          f"Overfitting at step {step}: validation loss rose {val[0]:.4g} -> "
                          f"{val[-1]:.4g} over {k} evaluations while training loss fell "
                          f"{train[0]:.4g} -> {train[-1]:.4g} (train.watch.overfit: {k})."
                          if on else "", good_step=self._evals[-(k + 1)][0] if on else 0)

    def rewind(self, step: int) -> None:
        """The run went back to `step` (a rollback): readings after it are forgotten, so
        what the replay logs is judged afresh."""
        keep = [i for i, (s, _) in enumerate(self._evals) if s <= step]
        self._evals = [self._evals[i] for i in keep]
        self._train_loss_at_eval = [self._train_loss_at_eval[i] for i in keep]
        self._firing.clear()
        self._logged = min(self._logged, step)

    def gpu(self, now: float, utilisation: float | None) -> list[Finding]:
        """The run's GPUs' busiest reading now (None: no GPU to read)."""
        rule = self.spec.idle_gpu
        if rule is None or utilisation is None or not self._training:
            return []
        seconds = _threshold(rule, 120.0)
        if utilisation > IDLE_UTIL_PERCENT:
            self._idle_since = None
            return self._fire("idle_gpu", rule, False, "")
        self._idle_since = self._idle_since if self._idle_since is not None else now
        idle = now - self._idle_since
        on = idle >= seconds
        return self._fire("idle_gpu", rule, on,
                          f"Idle GPU: at most {utilisation:.0f}% busy for {idle:.0f} s "
                          f"(train.watch.idle_gpu: {seconds:g} s)." if on else "")
