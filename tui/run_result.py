"""A run's result, one rule for every place that shows it (runs ls / show / compare,
the runs table and the run panel).

The result is the main metric of the model the run keeps: its best evaluation's with
train.restore_best, else its last evaluation's (`store.kept_metrics` reads which from
the summary a finished run records). A running run has no summary yet: its result so
far is read from its validation series by the same rule. Nothing here draws or prints.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.core.config import lower_is_better
from tui.formatting import SHORT_METRIC, main_metric

KEPT_LABEL = {"best": "best evaluation", "final": "last evaluation"}
"""How the evaluation whose model a run keeps is named."""


@dataclass(frozen=True)
class RunResult:
    """The run's main metric at the evaluation whose model it keeps."""

    metric: str
    """The metric's full name (`accuracy`, `perplexity`)."""
    value: float | None
    """None before the run has an evaluation."""
    kept: str
    """'best' or 'final': which evaluation's model the run keeps (so far, while it runs)."""
    step: int | None
    """The step of that evaluation, where the record says."""
    last: float | None
    """The same metric at the last evaluation."""

    @property
    def short(self) -> str:
        return SHORT_METRIC.get(self.metric, self.metric)

    @property
    def label(self) -> str:
        """`best evaluation` or `last evaluation`."""
        return KEPT_LABEL[self.kept]

    def to_json(self) -> dict:
        """What `--json` outputs add as `result`."""
        return {"metric": self.metric, "value": self.value, "of": self.label,
                "step": self.step, "last_evaluation": self.last}


def run_result(run) -> RunResult:
    """The run's result from its recorded summary (see `live_results` for a running one)."""
    name = main_metric(run)
    summary = run.summary or {}
    kept, metrics = run.kept
    value = metrics.get(name)
    last = summary.get(f"final_{name}")
    step = summary.get("best_step") if kept == "best" else summary.get("steps")
    return RunResult(name, value, kept, step if value is not None else None,
                     last if isinstance(last, (int, float)) else None)


def live_results(store, runs: list) -> list:
    """`runs`, a running one given a summary of its evaluations so far (its best and last
    value of the watched metric, and which the run would keep), so its result shows
    from its first evaluation, not only once it ends. One indexed read per running run."""
    return [_live(store, r) if r.status == "running" and "watched_metric" not in r.summary
            else r for r in runs]


def _live(store, run):
    name = _watched(run)
    series = store.series(run.id, f"val_{name}")
    if not series.values:
        return run
    pick = min if lower_is_better(name) else max
    # The first of equal values is the best, as training keeps the first improvement.
    best_i = pick(range(len(series.values)), key=lambda i: (series.values[i], -i)
                  if pick is max else (series.values[i], i))
    restore = ((run.config or {}).get("train") or {}).get("restore_best", True)
    live = {"watched_metric": name, "kept_eval": "best" if restore else "final",
            "best_step": series.steps[best_i], "steps": series.steps[-1],
            f"best_{name}": series.values[best_i], f"final_{name}": series.values[-1]}
    return replace(run, summary={**run.summary, **live})


def _watched(run) -> str:
    """The metric the run watches: early stopping's if it names one, else the task's."""
    stopping = ((run.config or {}).get("train") or {}).get("early_stopping") or {}
    metric = stopping.get("metric") if isinstance(stopping, dict) else None
    return metric.removeprefix("val_") if metric else main_metric(run)
