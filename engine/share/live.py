"""Reporting a training run to trackers as it trains (`train.report_to`).

The worker's store thread (engine.launch.sink) hands over what it has just committed,
metric points and event lines, with `put`, which never blocks; a thread of this
reporter's own opens the trackers (their imports take seconds) and writes to them, so
neither training nor the store's heartbeat ever waits on a tracker. A tracker that fails,
on opening or later (a missing package, a folder it cannot write), is dropped with one
warning, which the store thread records as an event: the run goes on, and the store keeps
every point (`runs export --to` writes them later).
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Sequence
from pathlib import Path

from engine.share.export import INTERNAL_METRICS, run_info
from engine.share.registry import make_tracker
from engine.share.trackers import Line, RunInfo, TrackerError
from store import Run, data_dir

CLOSE_TIMEOUT_S = 60.0
"""How long the worker waits at the end for trackers to write what is left."""


def report_folder(config: dict, tracker: str) -> Path:
    """Where a tracker writes a run's live report: `train.report_dir` (relative to the
    config file), else `trackers` in hubtune's data folder; W&B makes its own `wandb`."""
    chosen = (config.get("train") or {}).get("report_dir")
    if chosen:
        root = Path(chosen).expanduser()
        if not root.is_absolute():
            root = Path(config.get("base_dir") or ".") / root
    else:
        root = data_dir() / "trackers"
    return root if tracker == "wandb" else root / tracker


def live_report(run: Run, from_step: int | None = None) -> LiveReport | None:
    """The reporter for a run's `train.report_to`; None when it names no tracker.
    `from_step`: the run resumes and reports again from that step."""
    trackers = list((run.config.get("train") or {}).get("report_to") or [])
    if not trackers:
        return None
    return LiveReport({t: report_folder(run.config, t) for t in trackers}, run_info(run),
                      from_step=from_step)


class LiveReport:
    """Writes one run's points and events to its trackers from a thread of its own."""

    def __init__(self, folders: dict[str, Path], run: RunInfo, *,
                 from_step: int | None = None) -> None:
        self.folders = folders
        self.run = run
        self.from_step = from_step
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._warnings: collections.deque[str] = collections.deque()
        self._thread = threading.Thread(target=self._loop, name="tracker-report", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, points: Sequence[tuple], lines: Sequence[Line],
            rewind: int | None = None) -> None:
        """Hand over committed metric rows (step, epoch, name, value, time_unix) and event
        lines, after a rollback to step `rewind` when one came first; returns at once."""
        kept = [(step, name, value, when) for step, _, name, value, when in points
                if name not in INTERNAL_METRICS]
        if kept or lines or rewind is not None:
            self._queue.put((rewind, kept, list(lines)))

    def warnings(self) -> list[str]:
        """Warnings since the last call, for the run's event log."""
        out = []
        while self._warnings:
            out.append(self._warnings.popleft())
        return out

    def close(self, status: str, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is left and close every tracker (waits at most `timeout`)."""
        self._queue.put(status)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._warnings.append(f"The trackers did not finish writing within {timeout:.0f} "
                                  "s; the store keeps every point.")

    def _loop(self) -> None:
        open_ = {name: tracker for name in self.folders if (tracker := self._open(name))}
        item = None
        while True:
            item = self._queue.get() if item is None else item
            if isinstance(item, str):  # the run's status: the end
                for name, tracker in open_.items():
                    self._call(name, tracker.finish, item)
                return
            rewind, points, lines = item
            item = None
            while not self._queue.empty():  # catch up in one write per tracker
                nxt = self._queue.get()
                if isinstance(nxt, str) or nxt[0] is not None:  # the end, or a rollback:
                    item = nxt  # written after what came before it
                    break
                points, lines = points + nxt[1], lines + nxt[2]
            for name, tracker in list(open_.items()):
                ok = (rewind is None or self._call(name, tracker.rewind, rewind)) and \
                     (not points or self._call(name, tracker.scalars, points)) and \
                     (not lines or self._call(name, tracker.text, lines))
                if not ok:
                    del open_[name]

    def _open(self, name: str):
        try:
            tracker = make_tracker(name, self.folders[name])
            tracker.start(self.run, replace=False, from_step=self.from_step)
            return tracker
        except Exception as exc:  # any failure of another library: a warning, never the run's end
            self._warn(name, exc)
        return None

    def _call(self, name: str, method, arg) -> bool:
        try:
            method(arg)
            return True
        except Exception as exc:  # as in _open
            self._warn(name, exc)
            return False

    def _warn(self, name: str, exc: Exception) -> None:
        said = (str(exc) if isinstance(exc, TrackerError)
                else f"Reporting to {name} stopped ({type(exc).__name__}: {exc}).")
        self._warnings.append(
            f"{said} The run goes on without {name}, and the store keeps every point "
            f"(`hubtune runs export {self.run.run_id} --to {name} DIR` writes them later).")
