"""One process's connection to the run database: opening it (folder, header check,
migrations), its write transactions, and whether the file is still the one opened.

Every part of the store (`store.runs`, `store.leases`, `store.metrics`, ...) reads
and writes through one of these; `RunStore` opens it and hands it to each. A
sqlite3 connection belongs to the thread that opened it, so every process (and
thread) opens its own. Writers take `BEGIN IMMEDIATE` so that concurrent processes
queue on the busy timeout instead of failing with "database is locked"; the
database runs in WAL mode so readers never block writers.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlite_utils import Database

from store.errors import StoreError
from store.migrations import KNOWN, migrations

BUSY_TIMEOUT_MS = 60_000

_HEADER_CHECKED: set[Path] = set()
"""Database files this process has checked the header of (`_check_is_sqlite`)."""
_HEADER_LOCK = threading.Lock()


class StoreConnection:
    """The run database, opened and migrated to the latest schema."""

    def __init__(self, path: Path) -> None:
        self.path = path
        _prepare_directory(path.parent)
        _check_is_sqlite(path)
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db = Database(conn)
            """sqlite-utils' view of the connection (reads, and the migrations)."""
            _migrate(self.db, path)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"Cannot open the run database {path}: {exc}.") from None
        self._inode = os.stat(path).st_ino

    def file_replaced(self) -> bool:
        """Whether the database file was removed or replaced since it was opened.
        SQLite writes on into an unlinked file without an error, so a worker or a
        follower would otherwise record into (and read from) nowhere."""
        try:
            return os.stat(self.path).st_ino != self._inode
        except OSError:
            return True

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
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

    def read(self) -> sqlite3.Connection:
        """The connection, for reads outside a transaction."""
        return self.db.conn

    @property
    def schema_version(self) -> list[str]:
        """The migrations applied, in order."""
        return [m.name for m in migrations.applied(self.db)]

    def close(self) -> None:
        self.db.conn.close()


def _prepare_directory(folder: Path) -> None:
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


def _check_is_sqlite(path: Path) -> None:
    # Refuse before sqlite touches it, so a wrong path is never modified. Once per
    # process, before its first connection: closing any descriptor of the file
    # drops every POSIX lock the process holds on it, SQLite's included, and the
    # next process to close its last connection would then take itself for the
    # database's last user and delete the WAL this one still reads.
    key = path.resolve()
    with _HEADER_LOCK:
        if key in _HEADER_CHECKED:
            return
        if path.exists() and path.stat().st_size > 0:
            with open(path, "rb") as fh:
                if fh.read(16) != b"SQLite format 3\x00":
                    raise StoreError(
                        f"{path} is not a hubtune database (not an SQLite file); "
                        "move it away or set HUBTUNE_HOME to another folder."
                    )
        _HEADER_CHECKED.add(key)


def _migrate(db: Database, path: Path) -> None:
    # Two processes opening a fresh database at once must not both run m001: a lock
    # on a side file beside the real one (homes sharing it by symlink) serialises them.
    real = path.resolve()
    lock_path = real.with_name(real.name + ".lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            applied = {m.name for m in migrations.applied(db)}
            unknown = applied - set(KNOWN)
            if unknown:
                raise StoreError(
                    f"{path} was written by a newer hubtune (schema "
                    f"{sorted(unknown)[-1]}); upgrade hubtune to open it."
                )
            if db.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                db.conn.execute("PRAGMA journal_mode = WAL")
            if len(applied) < len(KNOWN):
                migrations.apply(db)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
