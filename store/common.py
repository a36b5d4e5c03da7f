"""Small helpers every part of the store uses."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime

from store.errors import LeaseLost, StoreError

STATUSES = ("queued", "running", "completed", "failed", "stopped", "interrupted", "pruned")
TERMINAL_STATUSES = frozenset({"completed", "failed", "stopped", "interrupted", "pruned"})


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


def check_lease(conn: sqlite3.Connection, run_id: int, lease: str) -> None:
    """Inside a write transaction: refuse unless `lease` still holds the run."""
    row = conn.execute("SELECT lease FROM runs WHERE id = ?", [run_id]).fetchone()
    if row is None or row[0] != lease:
        gone = "was deleted" if row is None else "was claimed by another worker"
        raise LeaseLost(f"Run {run_id} {gone}; this worker stops without writing to it.")


def new_lease() -> str:
    """A fresh lease: the token a run's worker must hold to write to it."""
    return uuid.uuid4().hex
