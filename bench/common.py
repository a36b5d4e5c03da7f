"""Timing helpers shared by the benchmark cases."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Result:
    """One row of the results table."""

    case: str
    metric: str
    ours: float | None
    """None for a case that could not run here (its notes say why)."""
    peer: float | None = None
    peer_name: str = ""
    unit: str = ""
    target: str = ""
    met: bool | None = None
    notes: str = ""
    extra: dict = field(default_factory=dict)
    paired: float | None = None
    """A ratio taken pair by pair (median of per-pair ratios), shown instead of ours / peer."""

    @property
    def ratio(self) -> float | None:
        if self.paired is not None:
            return self.paired
        if self.peer in (None, 0):
            return None
        return self.ours / self.peer


def median_time(fn: Callable[[], object], repeats: int = 5, setup: Callable[[], object] | None = None
                ) -> float:
    """Median wall time of `fn` over `repeats` runs (setup is not timed)."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(fns: dict[str, Callable[[], float]], repeats: int = 5) -> dict[str, float]:
    """Run each measurement in turn, `repeats` rounds, and return each one's median.

    Interleaving spreads slow drifts (thermal, other load) evenly over the sides.
    """
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(fn())
    return {k: statistics.median(v) for k, v in samples.items()}


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder, deleted afterwards, with HUBTUNE_HOME pointed at `home` inside
    it and put back as it was (unset included) on leaving."""
    saved = os.environ.get("HUBTUNE_HOME")
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["HUBTUNE_HOME"] = str(tmp / "home")
    try:
        yield tmp
    finally:
        if saved is None:
            os.environ.pop("HUBTUNE_HOME", None)
        else:
            os.environ["HUBTUNE_HOME"] = saved
        shutil.rmtree(tmp, ignore_errors=True)
