"""A run's event log and its checkpoints' records."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlite_utils import Database

from store.common import utc_now
from store.records import Checkpoint, EventRecord


class HistoryMixin:
    """The event and checkpoint methods of `RunStore` (which provides `db`, `_write` and `_check_lease`)."""

    db: Database
    _write: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def add_event(self, run_id: int, message: str, level: str = "info", *,
                  lease: str | None = None) -> None:
        with self._write() as conn:
            if lease is not None:
                self._check_lease(conn, run_id, lease)
            conn.execute(
                "INSERT INTO events (run_id, time_unix, level, message) VALUES (?,?,?,?)",
                [run_id, time.time(), level, message],
            )

    def events(self, run_id: int, *, after_id: int = 0, limit: int = 1000) -> list[EventRecord]:
        cur = self.db.execute(
            "SELECT id, run_id, time_unix, level, message FROM events"
            " WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
            [run_id, after_id, limit],
        )
        return [EventRecord(*r) for r in cur.fetchall()]

    def add_checkpoint(
        self, run_id: int, step: int, path: str, metric: float | None, *, is_best: bool = False,
        lease: str | None = None,
    ) -> None:
        with self._write() as conn:
            if lease is not None:
                self._check_lease(conn, run_id, lease)
            if is_best:
                conn.execute("UPDATE checkpoints SET is_best = 0 WHERE run_id = ?", [run_id])
            conn.execute(
                "INSERT INTO checkpoints (run_id, step, path, metric, is_best, created_utc)"
                " VALUES (?,?,?,?,?,?)",
                [run_id, step, path, metric, int(is_best), utc_now()],
            )

    def checkpoints(self, run_id: int) -> list[Checkpoint]:
        cur = self.db.execute(
            "SELECT id, run_id, step, path, metric, is_best FROM checkpoints"
            " WHERE run_id = ? ORDER BY step",
            [run_id],
        )
        return [Checkpoint(*r[:5], bool(r[5])) for r in cur.fetchall()]
