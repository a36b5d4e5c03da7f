"""A run's worker: the lease it claims the run with, the writes that check it, its
heartbeat and stop request, how its run ends, and the reaping of dead workers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.common import (
    STATUSES,
    TERMINAL_STATUSES,
    check_lease,
    new_lease,
    no_such_run,
    utc_now,
)
from store.errors import LeaseLost, StoreError
from store.packs import pack, unpack
from store.records import Run

if TYPE_CHECKING:
    from store.connection import StoreConnection
    from store.runs import Runs


class Leases:
    """A run's worker: claiming, ending, heartbeat, stop requests, reaping."""

    def __init__(self, connection: StoreConnection, runs: Runs) -> None:
        self._connection, self._runs = connection, runs
        self.db, self._write = connection.db, connection.write

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
                check_lease(conn, run_id, lease)  # deleted, or another launch's now
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
        self._runs.update(run_id, lease=lease, **values)

    def set_status(self, run_id: int, status: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self._runs.update(run_id, status=status)

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
        lease = new_lease()
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
                    raise no_such_run(run_id)
                raise StoreError(f"Run {run_id} is {row[0]} (another command got to it first); "
                                 "only a stopped, interrupted or failed run can be resumed.")
        return lease

    def recorded_home(self, run_id: int) -> Path | None:
        """The data folder (HUBTUNE_HOME) run `run_id`'s folder was recorded under, when
        that folder's database is this store's very file; None otherwise.

        Two homes can share one database, one's `hubtune.db` a symlink to the other's
        (or the home itself a symlink): a run recorded from the other home keeps its
        files there, and a process of this home that launches it must look there, not
        take the run for deleted. The same file is the same device and inode, whatever
        the paths say; a database that was copied or moved is not the same store, and
        its runs' folders are this home's.
        """
        row = self.db.execute("SELECT output_dir FROM runs WHERE id = ?", [run_id]).fetchone()
        if row is None or not row[0]:
            return None
        folder = Path(row[0])
        if folder.name != str(run_id) or folder.parent.name != "runs":
            return None
        home = folder.parent.parent
        try:
            theirs, ours = os.stat(home / self._connection.path.name), os.stat(self._connection.path)
        except OSError:
            return None
        return home if (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino) else None

    def fail_launch(self, run_id: int, lease: str, error: str) -> bool:
        """A launch that never got its worker going (the spawn, the slots or the run
        folder failed): the run, still `queued` under `lease`, ends `failed` with `error`,
        so it neither waits for ever nor holds its slots, and a resume can try again.
        False (nothing written) when its worker claimed it, another launch superseded it,
        or it was deleted."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = 'failed', finished_utc = ?, error = ?,"
                " queue_rank = NULL WHERE id = ? AND lease = ? AND status = 'queued'",
                [utc_now(), error, run_id, lease])
            if cur.rowcount == 0:
                return False
            conn.execute("INSERT INTO events (run_id, time_unix, level, message)"
                         " VALUES (?,?,?,?)", [run_id, time.time(), "error", error])
        return True

    def truncate_after(self, run_id: int, step: int, *, lease: str | None = None) -> None:
        """Drop metrics and checkpoints recorded after `step` (a resume replays them)."""
        with self._write() as conn:
            if lease is not None:
                check_lease(conn, run_id, lease)
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
        self._runs.update(run_id, lease=lease, heartbeat_unix=time.time())

    def request_stop(self, run_id: int) -> None:
        self._runs.update(run_id, stop_requested=1)

    def stop_requested(self, run_id: int) -> bool:
        row = self.db.execute("SELECT stop_requested FROM runs WHERE id = ?", [run_id]).fetchone()
        return bool(row and row[0])

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
        for run in self._runs.list_runs(status="running", limit=None):
            if run.host and run.host != host:
                continue  # another machine's worker; its pid means nothing here
            stale = run.heartbeat_unix is None or now - run.heartbeat_unix > stale_after_s
            if stale and not _pid_alive(run.pid) and self._end_unchanged(
                    run, "interrupted", "The worker process ended unexpectedly."):
                reaped.append(run.id)
        for run in self._runs.list_runs(status="queued", limit=None):
            # launched here (set_pid) but the launcher died before its worker claimed the run
            if run.pid and run.host == host and not _pid_alive(run.pid) and self._end_unchanged(
                    run, "failed", "The worker exited before it started training; see "
                    f"{run.output_dir}/worker.log."):
                reaped.append(run.id)
        return reaped


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
