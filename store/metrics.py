"""Metric values of runs: appended in batches, read as series (from packed copies
where they cover the range) and as each name's latest value."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import TYPE_CHECKING

from store.common import check_lease
from store.packs import pack, unpack
from store.records import Series

if TYPE_CHECKING:
    from store.connection import StoreConnection

MetricRow = tuple[int, float | None, str, float, float]
"""(step, epoch, name, value, time_unix) as handed to `log_metrics`."""


class Metrics:
    """Metric values: appended in batches, read as series and latest values."""

    def __init__(self, connection: StoreConnection) -> None:
        self.db, self._write = connection.db, connection.write

    def log_metrics(self, run_id: int, rows: Iterable[MetricRow], *,
                    lease: str | None = None) -> int:
        """Append many metric values in one transaction; returns how many."""
        batch = [(run_id, *row) for row in rows]
        if not batch:
            return 0
        by_name: dict[str, list[tuple[int, float]]] = {}
        for _, step, _, name, value, _ in batch:
            by_name.setdefault(name, []).append((step, value))
        packs = [(run_id, name, *p) for name, points in by_name.items()
                 if (p := pack(points)) is not None]
        with self._write() as conn:
            if lease is not None:
                check_lease(conn, run_id, lease)
            conn.executemany(
                "INSERT INTO metrics (run_id, step, epoch, name, value, time_unix)"
                " VALUES (?,?,?,?,?,?)",
                batch,
            )
            conn.executemany(
                "INSERT INTO metric_packs (run_id, name, first_step, last_step, n, steps, vals)"
                " VALUES (?,?,?,?,?,?,?)",
                packs,
            )
        return len(batch)

    def metric_rows(self, run_id: int) -> list[MetricRow]:
        """Every metric value of a run as (step, epoch, name, value, time_unix), by name
        then step: what `runs export --metrics` writes."""
        return self.db.execute(
            "SELECT step, epoch, name, value, time_unix FROM metrics WHERE run_id = ?"
            " ORDER BY name, step", [run_id]).fetchall()

    def last_step(self, run_id: int, name: str = "loss") -> int:
        """The highest step a metric was logged at; -1 before the first."""
        row = self.db.execute("SELECT max(step) FROM metrics WHERE run_id = ? AND name = ?",
                              [run_id, name]).fetchone()
        return row[0] if row and row[0] is not None else -1

    def metric_names(self, run_id: int) -> list[str]:
        cur = self.db.execute(
            "SELECT DISTINCT name FROM metrics WHERE run_id = ? ORDER BY name", [run_id]
        )
        return [r[0] for r in cur.fetchall()]

    def series(
        self, run_id: int, name: str, *, max_points: int | None = None, after_step: int = -1
    ) -> Series:
        """A metric series ordered by step, downsampled to about `max_points`.

        Read from the packed copy of each logged batch (store/packs.py); the
        plain rows are read only where a pack is missing. See
        `Series.downsampled` for which points are kept.
        """
        series = self._packed_series(run_id, name, after_step)
        if series is None:
            rows = self.db.conn.execute(
                "SELECT step, value FROM metrics WHERE run_id = ? AND name = ? AND step > ?"
                " ORDER BY step", [run_id, name, after_step]).fetchall()
            series = Series(name, [r[0] for r in rows], [r[1] for r in rows])
        return series.downsampled(max_points)

    def _packed_series(self, run_id: int, name: str, after_step: int) -> Series | None:
        """The whole series from its packs; None when the packs do not hold every point
        (a value that was not a number), and the plain rows must be read."""
        conn = self.db.conn
        packs = conn.execute(
            "SELECT first_step, last_step, steps, vals FROM metric_packs"
            " WHERE run_id = ? AND name = ? AND last_step > ? ORDER BY first_step, id",
            [run_id, name, after_step]).fetchall()
        steps, values = unpack((p[2], p[3]) for p in packs)
        ordered = all(b[0] >= a[1] for a, b in zip(packs, packs[1:], strict=False))
        if not ordered:  # batches logged out of step order: sort once, ties kept in order
            order = sorted(range(len(steps)), key=steps.__getitem__)
            steps, values = [steps[i] for i in order], [values[i] for i in order]
        if packs and packs[0][0] <= after_step:
            cut = bisect.bisect_right(steps, after_step)
            steps, values = steps[cut:], values[cut:]
        expected = conn.execute(
            "SELECT count(*) FROM metrics WHERE run_id = ? AND name = ? AND step > ?",
            [run_id, name, after_step]).fetchone()[0]
        return Series(name, steps, values) if expected == len(steps) else None

    def latest_metrics(self, run_id: int) -> dict[str, float]:
        """The most recent value of every metric of a run.

        The TUI asks twice a second while a run trains, so this must not grow
        with the run: it hops through the (run_id, name, step) index from one
        metric name to the next and reads each one's last step, a few index
        seeks per name, instead of visiting every row of the run.
        """
        cur = self.db.execute(
            "WITH RECURSIVE names(name) AS ("
            " SELECT (SELECT min(name) FROM metrics WHERE run_id = :run)"
            " UNION ALL"
            " SELECT (SELECT min(name) FROM metrics WHERE run_id = :run AND name > names.name)"
            " FROM names WHERE names.name IS NOT NULL)"
            " SELECT name, (SELECT value FROM metrics WHERE run_id = :run AND name = names.name"
            "  ORDER BY step DESC, rowid DESC LIMIT 1)"
            " FROM names WHERE name IS NOT NULL",
            {"run": run_id},
        )
        return dict(cur.fetchall())
