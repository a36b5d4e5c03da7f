"""The new-run form's sweep, without Textual: the sweep dialog's fields read into a
checked plan with the parsers `hubtune sweep` uses (engine.runs.sweep, engine.runs.search),
and the plan queued through the functions that command calls (engine.launch.start).

Checking is cheap and torch-free, so the dialog (tui/screens/sweep_dialog.py) runs it on
the UI thread and shows the one sentence inline; every point becomes a config before
anything is queued, so a typo queues nothing. Queueing writes the store and may start
workers: it runs off the UI thread (App.act_on_run).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.config import RunConfig, apply_overrides
from engine.core.errors import ConfigError
from engine.runs.search import check_search
from engine.runs.sweep import (
    GridAxis,
    RangeAxis,
    parse_grid,
    parse_range,
    sweep_points,
    sweep_run_named,
)

KINDS = (("Random", "random"), ("Grid", "grid"), ("TPE search (Optuna)", "tpe"))
"""The dialog's kinds of sweep, as (label, value)."""
PRUNE_CHOICES = ("median", "asha", "none")


@dataclass(frozen=True)
class SweepPlan:
    """A checked sweep over the form's config, ready to queue."""

    kind: str
    """random, grid or tpe."""
    base: RunConfig
    configs: tuple[RunConfig, ...] = ()
    """Grid and random: one config per point, named base-1, base-2, ..."""
    ranges: tuple[RangeAxis, ...] = ()
    """TPE: the ranges searched."""
    choices: tuple[GridAxis, ...] = ()
    """TPE: the settings picked from a list."""
    trials: int | None = None
    parallel: int | None = None
    prune: str = "median"
    seed: int = 0


def whole_number(text: str, what: str) -> int | None:
    """A field's whole number, None when empty, or one sentence saying what is wrong."""
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise ConfigError(f"{what} must be a whole number, e.g. 8; got {text!r}.")
    return int(text)


def split_space(text: str) -> tuple[list[str], list[str]]:
    """The search space's lines as (ranges, value lists): a value with a colon and no
    comma (`KEY=LO:HI[:log]`) is a range, any other (`KEY=A,B,...`) a list of values."""
    ranges, values = [], []
    for line in (raw.strip() for raw in text.splitlines()):
        if not line or line.startswith("#"):
            continue
        raw = line.partition("=")[2]
        (ranges if ":" in raw and "," not in raw else values).append(line)
    return ranges, values


def plan_sweep(cfg: RunConfig, *, kind: str, space: str, trials: int | None,
               parallel: int | None, prune: str, seed: int = 0) -> SweepPlan:
    """Check the dialog's sweep over `cfg` as `hubtune sweep` checks its options; raises
    ConfigError with the CLI's sentence."""
    ranges, values = split_space(space)
    base = cfg.to_dict()
    if kind == "tpe":
        from engine.runs.search import range_ends

        axes_r, axes_c = check_search(sampler="tpe", trials=trials, parallel=parallel,
                                      prune=prune, ranges=ranges, choices=values)
        for point in range_ends(axes_r, axes_c):  # each end a valid config, as the CLI checks
            _point_config(base, (point,))
        return SweepPlan("tpe", cfg, ranges=axes_r, choices=axes_c, trials=trials,
                         parallel=parallel, prune=prune, seed=seed)
    if kind == "random" and trials is None:
        raise ConfigError("A random sweep needs Trials: how many runs to draw, e.g. 8.")
    points = sweep_points([parse_grid(v) for v in values], [parse_range(r) for r in ranges],
                          trials if kind == "random" else None, seed)
    configs = tuple(sweep_run_named(_point_config(base, point), cfg.name, i)
                    for i, point in enumerate(points, 1))
    return SweepPlan(kind, cfg, configs=configs, seed=seed)


def queue_plan(store, plan: SweepPlan) -> tuple[str, list[int]]:
    """Queue the sweep (on a worker thread): returns (sweep id, run ids queued)."""
    from engine.launch.start import queue_sweep, queue_trials
    from engine.runs.search import new_search

    if plan.kind != "tpe":
        return queue_sweep(store, list(plan.configs))
    spec = new_search(store, plan.base, trials=plan.trials, parallel=plan.parallel,
                      ranges=plan.ranges, choices=plan.choices, prune=plan.prune,
                      seed=plan.seed)
    return spec.sweep_id, queue_trials(store, spec)


def _point_config(base: dict, point: tuple[str, ...]) -> RunConfig:
    return RunConfig.from_dict(apply_overrides(base, point))
