"""Sweeps: the points of a grid or random search over run settings, and a sweep's runs
ranked by their main metric.

Plain Python, torch-free. A point is a list of `KEY=VALUE` overrides, the same text
`--set` takes, so every point is a config a user could have typed. Queueing the points
(one run each, sharing a `sweep_id`) is `engine.launch.start.queue_sweep`'s.
"""

from __future__ import annotations

import itertools
import math
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.core.config import lower_is_better
from engine.core.errors import ConfigError

MAX_POINTS = 1000
"""More points than this is almost surely a typo in a grid."""


@dataclass(frozen=True)
class GridAxis:
    """`--grid KEY=V1,V2,...`: values as written (parsed as YAML, like `--set`)."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class RangeAxis:
    """`--range KEY=LO:HI[:log]`: drawn uniformly (or log-uniformly) by `--random N`;
    whole numbers when both ends are."""

    key: str
    low: float
    high: float
    log: bool = False
    integer: bool = False


def parse_grid(item: str) -> GridAxis:
    key, sep, raw = item.partition("=")
    values = tuple(v.strip() for v in raw.split(",") if v.strip())
    if not sep or not key.strip() or not values:
        raise ConfigError(f"--grid {item!r} must look like KEY=V1,V2, e.g. "
                          "train.learning_rate=1e-4,3e-4.")
    return GridAxis(key.strip(), values)


def parse_range(item: str) -> RangeAxis:
    key, sep, raw = item.partition("=")
    parts = raw.split(":")
    log = len(parts) == 3 and parts[2].strip() == "log"
    usage = (f"--range {item!r} must look like KEY=LO:HI or KEY=LO:HI:log, e.g. "
             "train.learning_rate=1e-5:1e-3:log.")
    if not sep or not key.strip() or len(parts) not in (2, 3) or (len(parts) == 3 and not log):
        raise ConfigError(usage)
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ConfigError(usage) from None
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"--range {item!r} needs finite ends with LO no more than HI.")
    if log and low <= 0:
        raise ConfigError(f"--range {item!r} is on a log scale, so LO must be more than 0.")
    integer = all(_is_int(p) for p in parts[:2])
    return RangeAxis(key.strip(), low, high, log, integer)


def sweep_points(grid: Sequence[GridAxis], ranges: Sequence[RangeAxis] = (),
                 random_n: int | None = None, seed: int = 0) -> list[tuple[str, ...]]:
    """The overrides of each point: every combination of the grid, or with `random_n`,
    that many draws (a grid value chosen at random per axis, a range value drawn)."""
    keys = [a.key for a in (*grid, *ranges)]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"The sweep names {twice[0]} twice; give each key one --grid or "
                          "--range.")
    if random_n is None:
        if ranges:
            raise ConfigError("--range values are drawn by a random search; add --random N "
                              "(how many runs), or list values with --grid.")
        if not grid:
            raise ConfigError("A sweep needs --grid KEY=V1,V2 (or --random N with --range "
                              "KEY=LO:HI).")
        size = math.prod(len(a.values) for a in grid)
        if size > MAX_POINTS:
            raise ConfigError(f"The grid has {size:,} points; keep it to {MAX_POINTS:,}.")
        return [tuple(f"{a.key}={v}" for a, v in zip(grid, combo, strict=True))
                for combo in itertools.product(*(a.values for a in grid))]
    if not 1 <= random_n <= MAX_POINTS:
        raise ConfigError(f"--random must be between 1 and {MAX_POINTS:,}, got {random_n}.")
    if not grid and not ranges:
        raise ConfigError("--random N needs something to draw: --range KEY=LO:HI or "
                          "--grid KEY=V1,V2.")
    rng = random.Random(seed)
    return [tuple([f"{a.key}={rng.choice(a.values)}" for a in grid]
                  + [f"{r.key}={_draw(rng, r)}" for r in ranges])
            for _ in range(random_n)]


def sweep_run_named(cfg, base: str, i: int):
    """`cfg` (a RunConfig) named as a sweep names its runs: `base-i`, `base` cut so the
    name stays within MAX_NAME_CHARS ("sweep" without one)."""
    import dataclasses

    from engine.core.config import MAX_NAME_CHARS

    suffix = f"-{i}"
    return dataclasses.replace(cfg, name=(base or "sweep")[: MAX_NAME_CHARS - len(suffix)]
                               + suffix)


def new_sweep_id() -> str:
    """A short id to type in `runs compare --sweep ID`."""
    return uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class RankedPoint:
    """One run of a sweep, as `runs compare --sweep` lists it."""

    rank: int | None
    """1 for the best; None for a run with no value of the metric (queued, failed...)."""
    run: Any
    metric: str | None
    value: float | None
    state: str
    """The run's status, or `early-stopped` for a completed run that stopped early."""


def rank_sweep(runs: Sequence[Any], total_steps: Mapping[int, float] | None = None
               ) -> list[RankedPoint]:
    """A sweep's runs, best first by the metric its runs watched (the task's main one
    unless early stopping named another), each at the evaluation whose model it keeps.
    `total_steps`: run id -> steps it was to train, to tell an early stop."""
    watched = [r.summary.get("watched_metric") for r in runs if r.summary.get("watched_metric")]
    metric = max(set(watched), key=watched.count) if watched else None
    scored, rest = [], []
    for run in runs:
        value = _score(run.summary, metric)
        state = _state(run, (total_steps or {}).get(run.id))
        (scored if value is not None else rest).append((run, value, state))
    minimise = metric is not None and lower_is_better(metric)
    scored.sort(key=lambda p: (p[1] if minimise else -p[1], p[0].id))
    rest.sort(key=lambda p: p[0].id)
    return ([RankedPoint(i, run, metric, value, state)
             for i, (run, value, state) in enumerate(scored, 1)]
            + [RankedPoint(None, run, metric, None, state) for run, _, state in rest])


def _score(summary: dict, metric: str | None) -> float | None:
    """The run's result: the metric of the model it keeps (store.kept_metrics)."""
    from store import kept_metrics

    if metric is None or summary.get("watched_metric") != metric:
        return None
    value = kept_metrics(summary)[1].get(metric)
    return float(value) if value is not None and math.isfinite(value) else None


def _state(run: Any, total: float | None) -> str:
    steps = run.summary.get("steps")
    if run.status == "completed" and isinstance(steps, int) and total and steps < total:
        return "early-stopped"
    return run.status


def _draw(rng: random.Random, r: RangeAxis) -> str:
    if r.log:
        value = math.exp(rng.uniform(math.log(r.low), math.log(r.high)))
    else:
        value = rng.uniform(r.low, r.high)
    if r.integer:
        return str(min(max(round(value), int(r.low)), int(r.high)))
    return f"{value:.4e}"  # with a point and an exponent: YAML reads it as a float


def _is_int(text: str) -> bool:
    text = text.strip()
    return text.lstrip("+-").isdigit()
