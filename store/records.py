"""Small frozen dataclasses the store hands out instead of row dicts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Run:
    """One fine-tuning run as recorded in the `runs` table."""

    id: int
    name: str
    status: str
    """queued, running, completed, failed, stopped or interrupted."""
    created_utc: str
    started_utc: str | None
    finished_utc: str | None
    parent_id: int | None
    config: dict[str, Any]
    """The whole run config, enough to reproduce the run."""
    env: dict[str, Any]
    """Library versions, device, host and git revision at launch."""
    model_id: str | None
    task: str | None
    dataset: str | None
    tags: tuple[str, ...]
    notes: str
    pid: int | None
    host: str | None
    heartbeat_unix: float | None
    stop_requested: bool
    error: str | None
    summary: dict[str, Any]
    """Final and best metrics, filled when the run ends (`kept_metrics` reads which is
    the run's result)."""
    output_dir: str | None
    lease: str | None = None
    """The token of the one worker allowed to write this run (RunStore.claim)."""
    queue_rank: int | None = None
    """Its place in the run queue (lower starts first); None for a run started at once."""
    slots_wanted: int | None = None
    """Slots (GPUs, or CPU slots) the run asked the queue for."""
    devices: tuple[str, ...] = ()
    """Slots the run holds while queued-and-launching or running: `gpu0`, `cpu0`, ..."""
    sweep_id: str | None = None
    """The sweep that queued it (`hubtune sweep`); None for a run of its own."""

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Run:
        return cls(
            id=row["id"],
            name=row["name"] or f"run-{row['id']}",
            status=row["status"],
            created_utc=row["created_utc"],
            started_utc=row["started_utc"],
            finished_utc=row["finished_utc"],
            parent_id=row["parent_id"],
            config=json.loads(row["config_json"] or "{}"),
            env=json.loads(row["env_json"] or "{}"),
            model_id=row["model_id"],
            task=row["task"],
            dataset=row["dataset"],
            tags=tuple(json.loads(row["tags_json"] or "[]")),
            notes=row["notes"] or "",
            pid=row["pid"],
            host=row["host"],
            heartbeat_unix=row["heartbeat_unix"],
            stop_requested=bool(row["stop_requested"]),
            error=row["error"],
            summary=json.loads(row["summary_json"] or "{}"),
            output_dir=row["output_dir"],
            lease=row.get("lease"),
            queue_rank=row.get("queue_rank"),
            slots_wanted=row.get("slots_wanted"),
            devices=tuple(json.loads(row.get("devices_json") or "[]")),
            sweep_id=row.get("sweep_id"),
        )

    @property
    def waiting(self) -> bool:
        """Waiting in the run queue: recorded by `train --queue`, not yet given slots."""
        return self.status == "queued" and self.queue_rank is not None and not self.devices

    @property
    def duration_s(self) -> float | None:
        """Seconds between start and finish (or now, while running)."""
        from datetime import UTC, datetime

        if not self.started_utc:
            return None
        start = datetime.fromisoformat(self.started_utc)
        end = datetime.fromisoformat(self.finished_utc) if self.finished_utc else datetime.now(UTC)
        return max(0.0, (end - start).total_seconds())

    @property
    def kept(self) -> tuple[str, dict[str, float]]:
        """('best' or 'final', the metrics of the evaluation whose model the run keeps)."""
        return kept_metrics(self.summary)

    def to_json(self) -> dict[str, Any]:
        """The stable shape printed by `hubtune runs show --json`."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "created_utc": self.created_utc,
            "started_utc": self.started_utc,
            "finished_utc": self.finished_utc,
            "duration_s": self.duration_s,
            "parent_id": self.parent_id,
            "model_id": self.model_id,
            "task": self.task,
            "dataset": self.dataset,
            "tags": list(self.tags),
            "notes": self.notes,
            "error": self.error,
            "summary": self.summary,
            "config": self.config,
            "env": self.env,
            "output_dir": self.output_dir,
            "sweep_id": self.sweep_id,
            "devices": list(self.devices),
        }


def kept_metrics(summary: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """The run's result: ('best', its best evaluation's metrics) when the model it keeps
    is the best evaluation's (train.restore_best), else ('final', its last evaluation's).

    The summary's `kept_eval` says which; runs recorded before it was written are read
    from `model_step` (the step of the weights kept) against `best_step`, and before that
    the best evaluation wins, as the runs table always showed.
    """
    def metrics(prefix: str) -> dict[str, float]:
        return {k.removeprefix(prefix): v for k, v in summary.items()
                if k.startswith(prefix) and k != "best_step" and isinstance(v, (int, float))
                and not isinstance(v, bool)}

    kept = summary.get("kept_eval")
    if kept not in ("best", "final"):
        model, best = summary.get("model_step"), summary.get("best_step")
        if model is None or best is None:  # each metric's best value, else its last
            best_values = metrics("best_")
            return ("best" if best_values else "final"), {**metrics("final_"), **best_values}
        kept = "best" if model == best else "final"
    return kept, metrics(f"{kept}_")


@dataclass(frozen=True)
class Series:
    """A metric series as two parallel columns, ordered by step.

    Columns rather than one object per point: a 100k-point series is read
    several times faster, and plotting wants columns anyway.
    """

    name: str
    steps: list[int]
    values: list[float]

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def last(self) -> tuple[int, float] | None:
        return (self.steps[-1], self.values[-1]) if self.steps else None

    def downsampled(self, max_points: int | None) -> Series:
        """About `max_points` of it: every k-th point plus the last, so the end of the
        curve, where a user looks, is exact."""
        if not max_points or len(self) <= max_points:
            return self
        k = -(-len(self) // max_points)
        steps, values = self.steps[::k], self.values[::k]
        if steps[-1] != self.steps[-1]:
            steps.append(self.steps[-1])
            values.append(self.values[-1])
        return Series(self.name, steps, values)


@dataclass(frozen=True)
class EventRecord:
    """One line of a run's event log."""

    id: int
    run_id: int
    time_unix: float
    level: str
    message: str


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint written by a run."""

    id: int
    run_id: int
    step: int
    path: str
    metric: float | None
    is_best: bool


@dataclass(frozen=True)
class Comparison:
    """Two or more runs side by side."""

    runs: tuple[Run, ...]
    config_diff: dict[str, tuple[Any, ...]]
    """Flattened config keys whose values differ, one value per run."""
    metrics: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    """Summary metric name -> one value per run (None where absent)."""


class SeriesTail:
    """One metric of one run followed as it grows: each read fetches only the new points.

    For a panel redrawing a live curve every second, where reading the whole
    series each time would cost more the longer the run. A run whose earlier
    points may have been rewritten (a resume) needs a fresh tail.
    """

    def __init__(self, run_id: int, name: str) -> None:
        self.run_id, self.name = run_id, name
        self._steps: list[int] = []
        self._values: list[float] = []

    def read(self, store, max_points: int | None = None) -> Series:
        """The whole series so far (downsampled), reading from `store` what is new."""
        after = self._steps[-1] if self._steps else -1
        fresh = store.series(self.run_id, self.name, after_step=after)
        self._steps += fresh.steps
        self._values += fresh.values
        # Copies: the caller may keep the result while this tail grows.
        return Series(self.name, self._steps[:], self._values[:]).downsampled(max_points)
