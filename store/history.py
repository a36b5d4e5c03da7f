"""A run's event log and its checkpoints' records."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from store.common import check_lease, utc_now
from store.records import Checkpoint, EventRecord

if TYPE_CHECKING:
    from store.connection import StoreConnection


class History:
    """A run's events and checkpoints."""

    def __init__(self, connection: StoreConnection) -> None:
        self.db, self._write = connection.db, connection.write

    def add_event(self, run_id: int, message: str, level: str = "info", *,
                  lease: str | None = None) -> None:
        with self._write() as conn:
            if lease is not None:
                check_lease(conn, run_id, lease)
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

    def event_counts(self, run_ids: list[int], *, containing: str,
                     level: str = "warning") -> dict[int, int]:
        """How many `level` events of each run carry `containing` in their message (runs
        with none are left out): the watch badges of the runs list."""
        if not run_ids:
            return {}
        marks = ",".join("?" * len(run_ids))
        cur = self.db.execute(
            f"SELECT run_id, COUNT(*) FROM events WHERE run_id IN ({marks}) AND level = ?"
            " AND instr(message, ?) > 0 GROUP BY run_id",
            [*run_ids, level, containing])
        return {run_id: n for run_id, n in cur.fetchall()}

    def add_checkpoint(
        self, run_id: int, step: int, path: str, metric: float | None, *, is_best: bool = False,
        lease: str | None = None,
    ) -> None:
        with self._write() as conn:
            if lease is not None:
                check_lease(conn, run_id, lease)
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
