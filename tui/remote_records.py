"""A remote's runs as this machine reads them (#37), without Textual: the CLI's
`runs compare` of several machines and the runs screen (tui/remote_runs.py) both turn a
remote's JSON into records here. Everything a remote sends is untrusted: it is checked
for type here and shown escaped by whoever prints it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from store import Run
from tui.safe_text import printable

READ_TIMEOUT_S = 30.0
"""A remote that takes longer to answer a read is taken for hung: its connection is
closed and opened again (ssh's keep-alives catch a dead one on their own)."""


@dataclass(frozen=True)
class RemoteRun(Run):
    """A run of another machine, as its `runs ls --json` or `runs show --json` gave it."""

    remote: str = ""
    """The remote it is on (`hubtune remote ls`)."""


def remote_run(remote: str, data: Any) -> RemoteRun | None:
    """The run a remote described in `data`; None if it is not shaped like one."""
    if not isinstance(data, dict) or type(data.get("id")) is not int:
        return None

    def text(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else str(value)

    def obj(key: str) -> dict:
        value = data.get(key)
        return value if isinstance(value, dict) else {}

    tags = data.get("tags") if isinstance(data.get("tags"), list) else []
    summary = _with_result(obj("summary"), obj("result"), text("status"))
    devices = data.get("devices") if isinstance(data.get("devices"), list) else []
    return RemoteRun(
        id=data["id"], name=text("name") or f"run-{data['id']}",
        status=text("status") or "?", created_utc=text("created_utc") or "",
        started_utc=text("started_utc"), finished_utc=text("finished_utc"),
        parent_id=data["parent_id"] if type(data.get("parent_id")) is int else None,
        config=obj("config"), env=obj("env"), model_id=text("model_id"),
        task=text("task"), dataset=text("dataset"), tags=tuple(str(t) for t in tags),
        notes=text("notes") or "", pid=None, host=None, heartbeat_unix=None,
        stop_requested=False, error=text("error"), summary=summary,
        output_dir=text("output_dir"), devices=tuple(str(d) for d in devices),
        sweep_id=text("sweep_id"), remote=remote)


def _with_result(summary: dict, result: dict, status: str | None) -> dict:
    """A running run's summary with its result so far (the remote read it from its
    evaluations, as tui.run_result does here), so its Result cell fills as a local
    running run's does."""
    value, name = result.get("value"), result.get("metric")
    if status != "running" or "watched_metric" in summary or not isinstance(name, str) \
            or not isinstance(value, (int, float)) or isinstance(value, bool):
        return summary
    kept = "best" if result.get("of") == "best evaluation" else "final"
    return {**summary, "watched_metric": name, "kept_eval": kept, f"{kept}_{name}": value}


def read_json(session, argv: list[str]) -> Any:
    """`hubtune ARGV` there, its printed JSON; its failure one RemoteError sentence."""
    from engine.remote.session import RemoteError

    answer = session.call(argv, timeout=READ_TIMEOUT_S)
    if answer.get("exit"):
        raise RemoteError(f"On {session.remote.name}: "
                          f"{printable(answer.get('error') or 'failed', limit=300)}")
    try:
        return json.loads(str(answer.get("stdout") or ""))
    except ValueError:
        raise RemoteError(f"Remote {session.remote.name} printed something other than "
                          f"JSON for `hubtune {' '.join(argv[:2])}`; is it the same hubtune "
                          "version?") from None


def slot_readings(slots: Any, devices) -> list:
    """The GPU readings (engine.cluster.gpus.GpuReading) that a remote's `queue slots
    --json` gives for the slots in `devices` (a run's), in the run's order; slots that
    are not GPUs, or not shaped like a slot, give none."""
    from engine.cluster.gpus import GpuReading

    def number(value) -> int | None:
        return value if type(value) is int else None

    by_name = {s.get("slot"): s for s in (slots if isinstance(slots, list) else [])
               if isinstance(s, dict)}
    out = []
    for name in devices:
        s = by_name.get(name)
        if s is None or s.get("kind") != "gpu":
            continue
        total, free = number(s.get("memory_total")), number(s.get("memory_free"))
        out.append(GpuReading(
            index=number(s.get("index")) if number(s.get("index")) is not None else -1,
            name=None if s.get("name") is None else str(s.get("name")),
            utilisation=number(s.get("utilisation")),
            memory_used=total - free if total is not None and free is not None else None,
            memory_total=total))
    return out
