"""Small helpers every part of the store uses."""

from __future__ import annotations

from datetime import UTC, datetime

from store.errors import StoreError

STATUSES = ("queued", "running", "completed", "failed", "stopped", "interrupted")
TERMINAL_STATUSES = frozenset({"completed", "failed", "stopped", "interrupted"})


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def no_such_run(run_id: int) -> StoreError:
    return StoreError(f"There is no run {run_id}; `hubtune runs ls` lists the runs.")
