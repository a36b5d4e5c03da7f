"""The interface every tracker adapter meets, what it is told about a run, and the registry.

A tracker is opened for one run (`start`), handed scalar points and event lines as they
come (`scalars`, `text`, any number of times) and closed (`finish`). Each adapter writes
through its tool's own library, imported inside `start` so nothing here pulls it in; a
missing library is a `TrackerMissing` whose message names the extra to install.
Torch-free; reads no store (export.py and live.py do, and build a `RunInfo`);
registry.py opens a tracker by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.core.config import TRACKERS  # noqa: F401  (what `runs export --to` accepts too)
from engine.core.errors import HubtuneError

PROJECT = "hubtune"
"""The MLflow experiment, W&B project and trackio project runs are written to."""

Point = tuple[int, str, float, float]
"""(step, metric name, value, time_unix): one scalar, with its step and wall time."""
Line = tuple[float, str, str]
"""(time_unix, level, message): one event of the run's log."""


class TrackerError(HubtuneError):
    """A tracker could not be written."""


class TrackerMissing(TrackerError):
    """The tracker's library is not installed."""


def missing(tracker: str, module: str) -> TrackerMissing:
    """The one sentence for a tracker whose library is not installed."""
    return TrackerMissing(f"Reporting to {tracker} needs the {module} package, which is not "
                          f"installed; install it with `pip install 'hubtune[{tracker}]'`.")


@dataclass(frozen=True)
class RunInfo:
    """What a tracker is told about one hubtune run: who it is and how it was set up."""

    run_id: int
    name: str
    created_utc: str
    """With the id, what makes `key` stable and unique across hubtune homes."""
    config: dict[str, Any] = field(default_factory=dict)
    """The whole run config (RunConfig.to_dict)."""
    tags: tuple[str, ...] = ()
    notes: str = ""
    parent_id: int | None = None
    """The run it was forked or continued from (lineage)."""
    sweep_id: str | None = None
    env: dict[str, Any] = field(default_factory=dict)
    """Library versions, device, host and git revision at launch."""
    status: str = "running"

    @property
    def key(self) -> str:
        """The run's id in every tracker, the same on every export and while it trains,
        so a repeated export replaces or extends a run instead of adding another."""
        stamp = "".join(c for c in self.created_utc if c.isdigit())[:14]
        return f"hubtune-{self.run_id}-{stamp}" if stamp else f"hubtune-{self.run_id}"

    @property
    def title(self) -> str:
        """The display name: `ID-NAME`, a folder name too (TensorBoard's run folder)."""
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.name)[:80]
        return f"{self.run_id}-{safe.strip('.') or 'run'}"

    def params(self) -> dict[str, str | int | float | bool]:
        """The config flattened to dotted keys, as hyperparameters: numbers, booleans and
        strings stay as they are, anything else (None, lists) as its JSON text."""
        return {key: value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
                for key, value in _flatten(self.config)}

    def lineage(self) -> dict[str, str]:
        """The hubtune identity every tracker records as tags (strings)."""
        out = {"hubtune.run_id": str(self.run_id), "hubtune.key": self.key,
               "hubtune.created_utc": self.created_utc}
        if self.parent_id is not None:
            out["hubtune.parent_id"] = str(self.parent_id)
        if self.sweep_id:
            out["hubtune.sweep_id"] = self.sweep_id
        return out


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from _flatten(v, f"{prefix}{k}.")
    elif prefix:
        yield prefix[:-1], value


class Tracker(Protocol):
    """One tracker, open on one run."""

    name: str

    def start(self, run: RunInfo, *, replace: bool, from_step: int | None = None) -> None:
        """Open (or reopen) the run. `replace`: a full export follows, so points written
        for this run before are dropped or skipped, never written twice. `from_step`: a
        resumed run reports again from this step on (what the tracker holds from there
        is superseded where the tool allows it, else the points it holds are kept)."""

    def scalars(self, points: Sequence[Point]) -> None:
        """Write scalar points (any order of names; each name's steps ascending)."""

    def text(self, lines: Sequence[Line]) -> None:
        """Write event lines of the run's log."""

    def rewind(self, step: int) -> None:
        """A rollback (train.watch) took the run back to its checkpoint of `step`; the
        steps after it are replayed. As with `from_step`: what the tracker holds after
        `step` is superseded where the tool allows it, else kept."""

    def finish(self, status: str) -> None:
        """Close the run: completed, failed, stopped or interrupted (or still running)."""


def log_text(lines: Sequence[Line]) -> str:
    """Event lines as one text: `2026-12-07 10:00:00 UTC [warning] message` per line."""
    import time

    return "".join(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(t))} UTC [{level}] "
                   f"{message}\n" for t, level, message in lines)
