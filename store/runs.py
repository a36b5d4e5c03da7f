"""`RunStore`: the one class through which runs are written and read.

Every process opens its own `RunStore` (a sqlite3 connection belongs to the
thread that opened it). Writers take `BEGIN IMMEDIATE` so that concurrent
processes queue on the busy timeout instead of failing with "database is
locked"; the database runs in WAL mode so readers never block writers.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from store.errors import LeaseLost, StoreError
from store.migrations import KNOWN, migrations
from store.packs import pack, unpack
from store.paths import db_path, run_dir
from store.queue import QueueMixin
from store.records import Checkpoint, Comparison, EventRecord, Run, Series

STATUSES = ("queued", "running", "completed", "failed", "stopped", "interrupted")
TERMINAL_STATUSES = frozenset({"completed", "failed", "stopped", "interrupted"})
BUSY_TIMEOUT_MS = 60_000
SORT_KEYS = {
    "created": "created_utc",
    "started": "started_utc",
    "finished": "finished_utc",
    "name": "name",
    "status": "status",
    "model": "model_id",
    "task": "task",
    "id": "id",
}

_HEADER_CHECKED: set[Path] = set()
"""Database files this process has checked the header of (RunStore._check_is_sqlite)."""
_HEADER_LOCK = threading.Lock()

MAX_NAME_CHARS = 200
MAX_TAG_CHARS = 64
MAX_TAGS = 32
MAX_NOTE_CHARS = 10_000

MetricRow = tuple[int, float | None, str, float, float]
"""(step, epoch, name, value, time_unix) as handed to `log_metrics`."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunStore(QueueMixin):
    """Run history in one SQLite file, migrated to the latest schema on open."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else db_path()
        self._prepare_directory()
        self._check_is_sqlite()
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db = Database(conn)
            self._migrate()
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"Cannot open the run database {self.path}: {exc}.") from None
        self._inode = os.stat(self.path).st_ino

    def file_replaced(self) -> bool:
        """Whether the database file was removed or replaced since this store opened it.
        SQLite writes on into an unlinked file without an error, so a worker or a
        follower would otherwise record into (and read from) nowhere."""
        try:
            return os.stat(self.path).st_ino != self._inode
        except OSError:
            return True

    # -- opening -----------------------------------------------------------

    def _prepare_directory(self) -> None:
        folder = self.path.parent
        for part in [folder, *folder.parents]:
            if part.exists():
                if not part.is_dir():
                    raise StoreError(
                        f"The data directory {folder} cannot be used: {part} is a file, not a "
                        "folder; set HUBTUNE_HOME to a folder."
                    )
                break
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the data directory {folder} ({exc.strerror}); "
                "set HUBTUNE_HOME to a writable folder."
            ) from None
        if not os.access(folder, os.W_OK):
            raise StoreError(
                f"The data directory {folder} is not writable; "
                "set HUBTUNE_HOME to a writable folder."
            )

    def _check_is_sqlite(self) -> None:
        # Refuse before sqlite touches it, so a wrong path is never modified. Once per
        # process, before its first connection: closing any descriptor of the file
        # drops every POSIX lock the process holds on it, SQLite's included, and the
        # next process to close its last connection would then take itself for the
        # database's last user and delete the WAL this one still reads.
        key = self.path.resolve()
        with _HEADER_LOCK:
            if key in _HEADER_CHECKED:
                return
            if self.path.exists() and self.path.stat().st_size > 0:
                with open(self.path, "rb") as fh:
                    if fh.read(16) != b"SQLite format 3\x00":
                        raise StoreError(
                            f"{self.path} is not a hubtune database (not an SQLite file); "
                            "move it away or set HUBTUNE_HOME to another folder."
                        )
            _HEADER_CHECKED.add(key)

    def _migrate(self) -> None:
        # Two processes opening a fresh database at once must not both run
        # m001; an advisory lock on a side file serialises them.
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                applied = {m.name for m in migrations.applied(self.db)}
                unknown = applied - set(KNOWN)
                if unknown:
                    raise StoreError(
                        f"{self.path} was written by a newer hubtune (schema "
                        f"{sorted(unknown)[-1]}); upgrade hubtune to open it."
                    )
                if self.db.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.db.conn.execute("PRAGMA journal_mode = WAL")
                if len(applied) < len(KNOWN):
                    migrations.apply(self.db)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @property
    def schema_version(self) -> list[str]:
        return [m.name for m in migrations.applied(self.db)]

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that queues for the lock instead of failing."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        else:
            conn.commit()

    # -- runs --------------------------------------------------------------

    def create_run(
        self,
        config: dict[str, Any],
        *,
        name: str | None = None,
        model_id: str | None = None,
        task: str | None = None,
        dataset: str | None = None,
        parent_id: int | None = None,
        tags: Sequence[str] = (),
        env: dict[str, Any] | None = None,
        queue_slots: int | None = None,
        sweep_id: str | None = None,
    ) -> int:
        """Record a new run as `queued` and return its id.

        The run gets a fresh lease (`Run.lease`): the token its worker must hold to
        claim it and write to it. Ids come from AUTOINCREMENT and are never reused.
        With `queue_slots` the run joins the end of the run queue asking for that many
        slots (`Run.waiting`), in the same statement.
        """
        if name is not None:
            check_name(name)
        tags = check_tags(tags)
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO runs (name, status, created_utc, parent_id, config_json, env_json,"
                " model_id, task, dataset, tags_json, lease, slots_wanted, sweep_id, queue_rank)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?, CASE WHEN ? THEN"
                " (SELECT coalesce(max(queue_rank), 0) + 1 FROM runs) END)",
                (
                    name,
                    "queued",
                    utc_now(),
                    parent_id,
                    json.dumps(config, sort_keys=True),
                    json.dumps(env or {}, sort_keys=True),
                    model_id,
                    task,
                    dataset,
                    json.dumps(list(tags)),
                    _new_lease(),
                    queue_slots,
                    sweep_id,
                    queue_slots is not None,
                ),
            )
            run_id = int(cur.lastrowid)
            conn.execute(
                "UPDATE runs SET output_dir = ? WHERE id = ?", (str(run_dir(run_id)), run_id)
            )
        return run_id

    def get_run(self, run_id: int) -> Run:
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", [run_id]).fetchone()
        if row is None:
            raise _no_such_run(run_id)
        cols = [d[0] for d in self.db.execute("SELECT * FROM runs LIMIT 0").description]
        return Run.from_row(dict(zip(cols, row, strict=True)))

    def _update(self, run_id: int, *, lease: str | None = None, **values: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in values)
        with self._write() as conn:
            if lease is not None:
                self._check_lease(conn, run_id, lease)
            cur = conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*values.values(), run_id])
            if cur.rowcount == 0:
                raise _no_such_run(run_id)

    @staticmethod
    def _check_lease(conn: sqlite3.Connection, run_id: int, lease: str) -> None:
        """Inside a write transaction: refuse unless `lease` still holds the run."""
        row = conn.execute("SELECT lease FROM runs WHERE id = ?", [run_id]).fetchone()
        if row is None or row[0] != lease:
            gone = "was deleted" if row is None else "was claimed by another worker"
            raise LeaseLost(f"Run {run_id} {gone}; this worker stops without writing to it.")

    def claim(self, run_id: int, lease: str, *, pid: int, host: str,
              env: dict[str, Any]) -> None:
        """Make this worker the run's one writer: `queued` -> `running` in one statement.

        Only the worker started with the run's current lease, and only while the run
        is still queued, gets it; a second worker for the same launch, a worker of a
        deleted run, or one whose launch was superseded raises `LeaseLost`.
        """
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = 'running', started_utc = ?, finished_utc = NULL,"
                " pid = ?, host = ?, env_json = ?, heartbeat_unix = ?, error = NULL"
                " WHERE id = ? AND lease = ? AND status = 'queued'",
                [utc_now(), pid, host, json.dumps(env, sort_keys=True), time.time(),
                 run_id, lease])
            if cur.rowcount == 0:
                self._check_lease(conn, run_id, lease)  # deleted, or another launch's now
                status = conn.execute("SELECT status FROM runs WHERE id = ?",
                                      [run_id]).fetchone()[0]
                raise LeaseLost(f"Run {run_id} is already {status}; this worker exits "
                                "without training.")

    def finish(
        self,
        run_id: int,
        status: str,
        *,
        summary: dict[str, Any] | None = None,
        error: str | None = None,
        lease: str | None = None,
    ) -> None:
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"{status!r} is not a final status")
        values: dict[str, Any] = {"status": status, "finished_utc": utc_now(), "error": error}
        if summary is not None:
            values["summary_json"] = json.dumps(summary, sort_keys=True)
        self._update(run_id, lease=lease, **values)

    def set_status(self, run_id: int, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self._update(run_id, status=status)

    def set_pid(self, run_id: int, pid: int, lease: str) -> bool:
        """Record the launcher's pid while the run waits for its worker; False when the
        launch was superseded, the run deleted, or the worker already claimed it."""
        import socket

        with self._write() as conn:
            cur = conn.execute("UPDATE runs SET pid = ?, host = ? WHERE id = ? AND lease = ?"
                               " AND status = 'queued'", [pid, socket.gethostname(), run_id, lease])
            return cur.rowcount == 1

    def requeue(self, run_id: int, *, allowed: Sequence[str] = ("stopped", "interrupted",
                                                               "failed")) -> str:
        """Make a finished run `queued` again for a resume; returns the new lease.

        One conditional update: of two resumes racing, exactly one gets the run;
        the other gets a sentence saying what the run is now.
        """
        lease = _new_lease()
        # Its clock restarts when the worker claims it; no time ticks while queued.
        marks = ", ".join("?" * len(allowed))
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = 'queued', stop_requested = 0, started_utc = NULL,"
                " finished_utc = NULL, error = NULL, pid = NULL, queue_rank = NULL,"
                " devices_json = NULL, assigned_unix = NULL, lease = ?"
                f" WHERE id = ? AND status IN ({marks})", [lease, run_id, *allowed])
            if cur.rowcount == 0:
                row = conn.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()
                if row is None:
                    raise _no_such_run(run_id)
                raise StoreError(f"Run {run_id} is {row[0]} (another command got to it first); "
                                 "only a stopped, interrupted or failed run can be resumed.")
        return lease

    def truncate_after(self, run_id: int, step: int, *, lease: str | None = None) -> None:
        """Drop metrics and checkpoints recorded after `step` (a resume replays them)."""
        with self._write() as conn:
            if lease is not None:
                self._check_lease(conn, run_id, lease)
            conn.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", [run_id, step])
            conn.execute("DELETE FROM metric_packs WHERE run_id = ? AND first_step > ?",
                         [run_id, step])
            straddling = conn.execute(
                "SELECT id, steps, vals FROM metric_packs WHERE run_id = ? AND last_step > ?",
                [run_id, step]).fetchall()
            for pack_id, steps, vals in straddling:
                points = [(s, v) for s, v in zip(*unpack([(steps, vals)]), strict=True)
                          if s <= step]
                first, last, n, steps, vals = pack(points)
                conn.execute("UPDATE metric_packs SET last_step = ?, n = ?, steps = ?, vals = ?"
                             " WHERE id = ?", [last, n, steps, vals, pack_id])
            conn.execute("DELETE FROM checkpoints WHERE run_id = ? AND step > ?", [run_id, step])

    def heartbeat(self, run_id: int, lease: str | None = None) -> None:
        self._update(run_id, lease=lease, heartbeat_unix=time.time())

    def request_stop(self, run_id: int) -> None:
        self._update(run_id, stop_requested=1)

    def stop_requested(self, run_id: int) -> bool:
        row = self.db.execute("SELECT stop_requested FROM runs WHERE id = ?", [run_id]).fetchone()
        return bool(row and row[0])

    def set_notes(self, run_id: int, notes: str) -> None:
        self._update(run_id, notes=check_note(notes))

    def set_tags(self, run_id: int, tags: Sequence[str]) -> None:
        self._update(run_id, tags_json=json.dumps(sorted(set(check_tags(tags)))))

    def list_runs(
        self,
        *,
        status: str | None = None,
        search: str | None = None,
        task: str | None = None,
        model: str | None = None,
        tag: str | None = None,
        sweep: str | None = None,
        sort: str = "-created",
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[Run]:
        """Runs matching every filter given, newest first unless `sort` says otherwise.

        `sort` is a key of SORT_KEYS, prefixed with `-` for descending.
        """
        where, params = [], []
        if status:
            where.append("status = ?")
            params.append(status)
        if task:
            where.append("task = ?")
            params.append(task)
        if model:
            where.append("model_id LIKE ?")
            params.append(f"%{model}%")
        if sweep:
            where.append("sweep_id = ?")
            params.append(sweep)
        if tag:
            where.append("EXISTS (SELECT 1 FROM json_each(tags_json) WHERE value = ?)")
            params.append(tag)
        if search:
            like = f"%{search}%"
            where.append(
                "(name LIKE ? OR model_id LIKE ? OR task LIKE ? OR dataset LIKE ? OR notes LIKE ?"
                " OR tags_json LIKE ? OR CAST(id AS TEXT) = ?)"
            )
            params += [like] * 6 + [search]
        desc = sort.startswith("-")
        key = SORT_KEYS.get(sort.lstrip("-"))
        if key is None:
            raise StoreError(
                f"Cannot sort runs by {sort.lstrip('-')!r}; use one of {', '.join(SORT_KEYS)}."
            )
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {key} {'DESC' if desc else 'ASC'}, id {'DESC' if desc else 'ASC'}"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        cur = self.db.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return [Run.from_row(dict(zip(cols, row, strict=True))) for row in cur.fetchall()]

    def count_runs(self) -> int:
        return self.db.execute("SELECT count(*) FROM runs").fetchone()[0]

    def delete_run(self, run_id: int, *, remove_files: bool = True) -> None:
        """Delete a run, its metrics, events and checkpoints, and its folder.

        The status is checked inside the deleting transaction, so a worker that
        claims the run at the same moment either wins (the delete is refused) or
        finds the run gone (its claim fails and it exits without writing).
        """
        with self._write() as conn:
            row = conn.execute("SELECT status, output_dir FROM runs WHERE id = ?",
                               [run_id]).fetchone()
            if row is None:
                raise _no_such_run(run_id)
            status, output_dir = row
            if status == "running":
                raise StoreError(f"Run {run_id} is still running; stop it before deleting it.")
            for table in ("metrics", "metric_packs", "events", "checkpoints"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            conn.execute("UPDATE runs SET parent_id = NULL WHERE parent_id = ?", [run_id])
            conn.execute("DELETE FROM runs WHERE id = ?", [run_id])
        if remove_files and output_dir:
            shutil.rmtree(output_dir, ignore_errors=True)

    # -- metrics and events ------------------------------------------------

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
                self._check_lease(conn, run_id, lease)
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

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the database
        (SQLite's data_version): a cheap "has anything changed?" for pollers."""
        return self.db.conn.execute("PRAGMA data_version").fetchone()[0]

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

    # -- review ------------------------------------------------------------

    def compare(self, run_ids: Sequence[int]) -> Comparison:
        """Config keys that differ and summary metrics, one column per run."""
        if len(run_ids) < 2:
            raise StoreError("Compare needs at least two run ids.")
        runs = tuple(self.get_run(i) for i in run_ids)
        flat = [_flatten(r.config) for r in runs]
        keys = sorted(set().union(*flat))
        diff = {
            k: tuple(f.get(k) for f in flat)
            for k in keys
            if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1
        }
        names = sorted(set().union(*(r.summary for r in runs)))
        metrics = {n: tuple(r.summary.get(n) for r in runs) for n in names}
        return Comparison(runs=runs, config_diff=diff, metrics=metrics)

    def _end_unchanged(self, run: Run, status: str, error: str) -> bool:
        """Finish `run` as `status` only if it is still as read (same status, lease and
        pid): a resume or a claim in between wins. True if it was finished."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = ?, finished_utc = ?, error = ?"
                " WHERE id = ? AND status = ? AND lease IS ? AND pid IS ?",
                [status, utc_now(), error, run.id, run.status, run.lease, run.pid])
            return cur.rowcount == 1

    def reap_interrupted(self, *, stale_after_s: float = 30.0) -> list[int]:
        """Mark running runs on this host whose worker is gone as `interrupted`, and
        queued ones whose launcher died before its worker claimed them as `failed`."""
        import socket

        host = socket.gethostname()
        now = time.time()
        reaped = []
        for run in self.list_runs(status="running", limit=None):
            if run.host and run.host != host:
                continue  # another machine's worker; its pid means nothing here
            stale = run.heartbeat_unix is None or now - run.heartbeat_unix > stale_after_s
            if stale and not _pid_alive(run.pid) and self._end_unchanged(
                    run, "interrupted", "The worker process ended unexpectedly."):
                reaped.append(run.id)
        for run in self.list_runs(status="queued", limit=None):
            # launched here (set_pid) but the launcher died before its worker claimed the run
            if run.pid and run.host == host and not _pid_alive(run.pid) and self._end_unchanged(
                    run, "failed", "The worker exited before it started training; see "
                    f"{run.output_dir}/worker.log."):
                reaped.append(run.id)
        return reaped


def _no_such_run(run_id: int) -> StoreError:
    return StoreError(f"There is no run {run_id}; `hubtune runs ls` lists the runs.")


def _new_lease() -> str:
    return uuid.uuid4().hex


def check_name(name: str) -> str:
    """A run name a terminal and a table can show: one line, at most MAX_NAME_CHARS."""
    if len(name) > MAX_NAME_CHARS:
        raise StoreError(f"The run name is {len(name):,} characters long; "
                         f"keep it to {MAX_NAME_CHARS}.")
    _refuse_control("The run name", name)
    return name


def check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Tags trimmed, each one line of at most MAX_TAG_CHARS, at most MAX_TAGS of them."""
    cleaned = tuple(t.strip() for t in tags if t.strip())
    if len(cleaned) > MAX_TAGS:
        raise StoreError(f"A run can have at most {MAX_TAGS} tags, got {len(cleaned)}.")
    for tag in cleaned:
        if len(tag) > MAX_TAG_CHARS:
            raise StoreError(f"The tag {tag[:20]!r}... is {len(tag)} characters long; "
                             f"keep tags to {MAX_TAG_CHARS}.")
        _refuse_control("A tag", tag)
    return cleaned


def check_note(note: str) -> str:
    """A note of at most MAX_NOTE_CHARS; newlines kept, other control characters refused."""
    if len(note) > MAX_NOTE_CHARS:
        raise StoreError(f"The note is {len(note):,} characters long; "
                         f"keep it to {MAX_NOTE_CHARS:,}.")
    if _has_control(note.replace("\n", "")):
        raise StoreError("The note holds a control character (an escape, tab or carriage "
                         "return); use plain text and newlines.")
    return note


def _refuse_control(what: str, text: str) -> None:
    if _has_control(text):
        raise StoreError(f"{what} holds a control character (a newline, tab or escape); "
                         "use plain text.")


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in text)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True
