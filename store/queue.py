"""The run queue's rows: who waits in which order, which slots each run holds, and the
queue's pause switch. One part of `RunStore`.

The store only records; which waiting run starts on which slot is decided by
`engine.runs.queue`, handed in as a function that runs inside the write transaction. That
transaction is `BEGIN IMMEDIATE`: two processes assigning at the same instant take
turns, and the second sees the first's assignments, so a slot is never given twice.
Never imports the engine.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from store.common import utc_now
from store.errors import StoreError

if TYPE_CHECKING:
    from store.connection import StoreConnection

ACTIVE = "status IN ('queued', 'running')"
"""Runs that hold the slots recorded in `devices_json`."""
WAITING = "status = 'queued' AND queue_rank IS NOT NULL AND devices_json IS NULL"
"""Runs in the queue that have no slots yet (`Run.waiting`)."""
STALE_ASSIGNMENT_S = 120.0
"""Slots given to a run whose launcher never recorded a worker pid within this long go
back to the pool (the launcher died between assigning and spawning)."""
PAUSED_KEY = "queue_paused"


@dataclass(frozen=True)
class QueuedRun:
    """A run waiting in the queue, as the scheduler sees it."""

    id: int
    slots_wanted: int
    """GPUs (or CPU slots) it needs at once."""
    lease: str | None


@dataclass(frozen=True)
class QueueState:
    """The queue as read inside one write transaction."""

    waiting: tuple[QueuedRun, ...]
    """Runs waiting for slots, first in line first."""
    held: dict[str, tuple[int, ...]]
    """Slot name -> ids of the queued-and-launching or running runs holding it."""
    paused: bool
    """`hubtune queue pause`: nothing waiting is started until resumed."""


@dataclass(frozen=True)
class Assigned:
    """Slots given to a run; its worker is to be launched with them."""

    run_id: int
    devices: tuple[str, ...]
    lease: str | None


Chooser = Callable[[QueueState], Sequence[tuple[int, Sequence[str]]]]
"""Given the queue, the (run id, slots) to assign now."""


class Queue:
    """The run queue: its order, the slots runs hold, its pause switch."""

    def __init__(self, connection: StoreConnection) -> None:
        self.db, self._write, self._read = connection.db, connection.write, connection.read

    def queue_state(self) -> QueueState:
        """The queue as it stands (a read, no lock): for listings."""
        return _state(self._read())

    def has_waiting(self) -> bool:
        """Whether any run waits in the queue: a cheap check before reading the GPUs."""
        return self._read().execute(f"SELECT 1 FROM runs WHERE {WAITING} LIMIT 1"
                                    ).fetchone() is not None

    def assign_slots(self, choose: Chooser, *,
                     stale_after_s: float = STALE_ASSIGNMENT_S) -> list[Assigned]:
        """Give slots to runs as `choose` decides, in one `BEGIN IMMEDIATE` transaction.

        `choose` sees the queue read inside the transaction; a run it names gets its
        slots only if it is still queued. Slots of an assignment that never got a worker
        pid within `stale_after_s` are released first.
        """
        now = time.time()
        with self._write() as conn:
            conn.execute("UPDATE runs SET devices_json = NULL, assigned_unix = NULL"
                         " WHERE status = 'queued' AND pid IS NULL AND devices_json IS NOT NULL"
                         " AND assigned_unix < ?", [now - stale_after_s])
            state = _state(conn)
            out = []
            for run_id, devices in choose(state):
                cur = conn.execute(
                    "UPDATE runs SET devices_json = ?, assigned_unix = ? WHERE id = ?"
                    " AND status = 'queued' RETURNING lease",
                    [json.dumps(list(devices)), now, run_id])
                row = cur.fetchone()
                if row is not None:
                    out.append(Assigned(run_id, tuple(devices), row[0]))
        return out

    def waiting_ids(self) -> list[int]:
        """Ids of the runs waiting in the queue, first in line first."""
        return [r.id for r in _waiting(self._read())]

    def move_in_queue(self, run_id: int, position: int) -> int:
        """Put a waiting run at `position` (1 = next to start; past the end = last);
        returns the position it got."""
        with self._write() as conn:
            order = [r.id for r in _waiting(conn)]
            if run_id not in order:
                raise _not_waiting(conn, run_id)
            order.remove(run_id)
            position = max(1, min(position, len(order) + 1))
            order.insert(position - 1, run_id)
            conn.executemany("UPDATE runs SET queue_rank = ? WHERE id = ?",
                             [(rank, rid) for rank, rid in enumerate(order, 1)])
        return position

    def dequeue(self, run_id: int) -> bool:
        """Take a run that waits in the queue out of it (it ends `stopped`, never having
        started); False if it is not waiting, e.g. it was given slots meanwhile."""
        now = utc_now()
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE runs SET status = 'stopped', finished_utc = ?, queue_rank = NULL"
                f" WHERE id = ? AND {WAITING} AND pid IS NULL", [now, run_id])
            if cur.rowcount == 0:
                return False
            conn.execute("INSERT INTO events (run_id, time_unix, level, message)"
                         " VALUES (?,?,?,?)",
                         [run_id, time.time(), "info", "Removed from the queue before it "
                          "started."])
        return True

    def queue_paused(self) -> bool:
        return _paused(self._read())

    def set_queue_paused(self, paused: bool) -> None:
        with self._write() as conn:
            conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)"
                         " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                         [PAUSED_KEY, "1" if paused else "0"])


def _state(conn: sqlite3.Connection) -> QueueState:
    held: dict[str, list[int]] = {}
    for run_id, devices in conn.execute(
            f"SELECT id, devices_json FROM runs WHERE {ACTIVE} AND devices_json IS NOT NULL"
            " ORDER BY id"):
        for device in _devices(devices):
            held.setdefault(device, []).append(run_id)
    return QueueState(waiting=tuple(_waiting(conn)),
                      held={k: tuple(v) for k, v in held.items()}, paused=_paused(conn))


def _waiting(conn: sqlite3.Connection) -> Iterator[QueuedRun]:
    for run_id, wanted, lease in conn.execute(
            f"SELECT id, slots_wanted, lease FROM runs WHERE {WAITING}"
            " ORDER BY queue_rank, id").fetchall():
        yield QueuedRun(run_id, max(int(wanted or 1), 1), lease)


def _paused(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", [PAUSED_KEY]).fetchone()
    return bool(row and row[0] == "1")


def _devices(text: str | None) -> list[str]:
    try:
        found = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(d) for d in found] if isinstance(found, list) else []


def _not_waiting(conn: sqlite3.Connection, run_id: int) -> StoreError:
    row = conn.execute("SELECT status, devices_json FROM runs WHERE id = ?",
                       [run_id]).fetchone()
    if row is None:
        return StoreError(f"There is no run {run_id}; `hubtune runs ls` lists the runs.")
    state = "starting" if row[0] == "queued" else row[0]
    return StoreError(f"Run {run_id} is not waiting in the queue (it is {state}); "
                      "`hubtune queue ls` lists the runs that are.")
