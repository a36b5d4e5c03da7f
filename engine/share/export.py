"""Recorded runs written to a tracker (`hubtune runs export ID... --to TRACKER DIR`).

Reads the store through `RunStore`'s public methods only: the run (config, tags, notes,
parent, sweep, environment), its metric series and its events. Each run is written whole
and replaces what an earlier export (or live reporting) wrote for it, so exporting twice
never duplicates a point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from engine.core.events import STEP_METRIC
from engine.share.registry import make_tracker
from engine.share.trackers import Line, Point, RunInfo
from store import Run, RunStore

INTERNAL_METRICS = frozenset({STEP_METRIC, "total_steps"})
"""Counters the store keeps for the run panel; not part of the run's history."""
EVENT_PAGE = 1000


def run_info(run: Run) -> RunInfo:
    """What a tracker is told about a recorded run."""
    return RunInfo(run_id=run.id, name=run.name, created_utc=run.created_utc,
                   config=run.config, tags=run.tags, notes=run.notes, parent_id=run.parent_id,
                   sweep_id=run.sweep_id, env=run.env, status=run.status)


def run_points(store: RunStore, run_id: int) -> list[Point]:
    """Every metric point of a run, in step order (names in order within a step)."""
    points = [(step, name, value, when) for step, _, name, value, when
              in store.metric_rows(run_id) if name not in INTERNAL_METRICS]
    return sorted(points, key=lambda p: (p[0], p[1]))


def run_lines(store: RunStore, run_id: int) -> list[Line]:
    """Every event of a run's log, oldest first."""
    lines: list[Line] = []
    after = 0
    while page := store.events(run_id, after_id=after, limit=EVENT_PAGE):
        lines += [(e.time_unix, e.level, e.message) for e in page]
        after = page[-1].id
    return lines


def export_runs(store: RunStore, run_ids: Sequence[int], tracker: str, folder: Path, *,
                done: Callable[[int, int], None] | None = None) -> int:
    """Write each run to `tracker` under `folder`; `done(run_id, points)` after each.
    Returns the points written in all."""
    total = 0
    for run_id in run_ids:
        run = store.get_run(run_id)
        points = run_points(store, run_id)
        writer = make_tracker(tracker, folder)
        writer.start(run_info(run), replace=True)
        try:
            writer.scalars(points)
            writer.text(run_lines(store, run_id))
        finally:
            writer.finish(run.status)
        total += len(points)
        if done is not None:
            done(run_id, len(points))
    return total
