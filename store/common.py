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


MAX_RUN_ID = 2**63 - 1
"""SQLite's largest integer: a larger id cannot even be asked for (sqlite3 raises
OverflowError on binding it), so it names no run."""


def check_run_id(run_id: int) -> int:
    """`run_id` if SQLite can hold it, else the store's "no such run" error."""
    if not -MAX_RUN_ID - 1 <= run_id <= MAX_RUN_ID:
        raise no_such_run(run_id)
    return run_id
