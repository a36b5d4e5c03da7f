"""A remote run's panel, live (#37): its curves, latest metrics (so its step, speed and
ETA) and the GPU readings of its box, followed over the remote's SSH session on the
runs screen's poll thread for that remote (tui/remote_runs.py), never on the UI thread.

Each read asks only for what is new: `runs metrics ID --name loss --name val_X
--after-step S --json`, S one before the highest step seen (a step's evaluation may be
stored after its loss was read; everything of earlier steps is stored before a later
step's loss), so a poll costs the same at step 100 and at step 100,000, and a read cut
off by a dropped connection is asked again from the same step: nothing lost, and a
point read twice is drawn once. A resumed run (its start time changed) is
followed afresh, as this machine's are (tui/run_watcher.py). Its event log is read the
same way, `runs events ID --after E --json` from the last event seen (the panel draws
an event id once). The GPU line comes from
the remote's `queue slots --json`, read every few seconds for the slots the run holds.
Everything the remote sends is checked for type here; a failure is a RemoteError
sentence for the poll thread to handle.
"""

from __future__ import annotations

import math
import time

from store import EventRecord, Series
from tui.formatting import main_metric
from tui.messages import RunDetailRefreshed
from tui.remote_records import RemoteRun, read_json

MAX_POINTS = 200
"""Points of each curve drawn, as for this machine's runs."""
GPU_EVERY_S = 3.0
"""How often the remote's GPU readings are read while its run trains."""


class RemoteFollow:
    """One remote's selected run, followed from the last step seen."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        """(run id, started_utc) being followed: another run or a resume starts afresh."""
        self.points: dict[str, tuple[list[int], list[float]]] = {}
        self.highest = -1
        """The highest step of any point read."""
        self.gpu = ""
        self.gpu_read_at = 0.0
        self.last_event = 0
        """The id of the last event read (an event is read once per run followed)."""

    def read(self, session, run: RemoteRun) -> RunDetailRefreshed:
        """The panel's message for `run`, with what is new since the last read."""
        key = (run.id, run.started_utc)
        names = ["loss", f"val_{main_metric(run)}"]
        if key != self.key or list(self.points) != names:
            self.key, self.gpu, self.gpu_read_at, self.highest = key, "", 0.0, -1
            self.points = {name: ([], []) for name in names}
            self.last_event = 0
        after = max(-1, self.highest - 1)
        argv = ["runs", "metrics", str(run.id), "--after-step", str(after), "--json"]
        for name in names:
            argv[3:3] = ["--name", name]
        data = _answer(session, argv)
        data = data if isinstance(data, dict) else {}
        self._add(data.get("series"))
        latest = _numbers(data.get("latest"))
        events = self._read_events(session, run)
        self._read_gpu(session, run)
        loss, val = (Series(n, s[:], v[:]).downsampled(MAX_POINTS)
                     for n, (s, v) in self.points.items())
        return RunDetailRefreshed(run=run, loss=loss, val_metric=val, latest=latest,
                                  events=events, gpu=self.gpu or "no GPU", remote=run.remote)

    def _read_events(self, session, run: RemoteRun) -> list:
        """The run's events after the last one read (store.EventRecord, checked for type)."""
        data = _answer(session, ["runs", "events", str(run.id), "--after",
                                 str(self.last_event), "--json"])
        rows = data.get("events") if isinstance(data, dict) else None
        out = []
        for e in rows if isinstance(rows, list) else []:
            if not isinstance(e, dict) or type(e.get("id")) is not int \
                    or e["id"] <= self.last_event:
                continue
            when = e.get("time_unix")
            out.append(EventRecord(
                id=e["id"], run_id=run.id, level=str(e.get("level") or "info")[:20],
                time_unix=float(when) if _is_number(when) else 0.0,
                message=str(e.get("message") or "")))
            self.last_event = e["id"]
        return out

    def _add(self, series) -> None:
        """Append the points past each curve's last step (a point read twice is not
        drawn twice)."""
        if not isinstance(series, dict):
            return
        for name, (steps, values) in self.points.items():
            got = series.get(name)
            if not isinstance(got, dict):
                continue
            new_steps, new_values = got.get("steps"), got.get("values")
            if not isinstance(new_steps, list) or not isinstance(new_values, list):
                continue
            for step, value in zip(new_steps, new_values, strict=False):
                if type(step) is int and _is_number(value) and (not steps or step > steps[-1]):
                    steps.append(step)
                    values.append(float(value))
                    self.highest = max(self.highest, step)

    def _read_gpu(self, session, run: RemoteRun) -> None:
        """The GPU line of the run's slots on its box, every GPU_EVERY_S while it trains."""
        from tui.gpu import gpu_line
        from tui.remote_records import slot_readings

        if run.status != "running":
            self.gpu = ""
            return
        if time.monotonic() - self.gpu_read_at < GPU_EVERY_S:
            return
        self.gpu_read_at = time.monotonic()
        readings = slot_readings(_answer(session, ["queue", "slots", "--json"]),
                                 run.devices)
        self.gpu = f"on {run.remote}: {gpu_line(readings)}"


def _answer(session, argv: list[str]):
    """`read_json`, but a remote that answers with a failure (one without `runs metrics`,
    say) leaves the panel as it is: only a lost connection is the poll's to handle."""
    from engine.remote.session import RemoteError, RemoteLost

    try:
        return read_json(session, argv)
    except RemoteLost:
        raise
    except RemoteError:
        return None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _numbers(latest) -> dict[str, float]:
    """A remote's latest metrics: only names with finite numbers."""
    if not isinstance(latest, dict):
        return {}
    return {str(k): float(v) for k, v in latest.items() if _is_number(v)}
