"""The remotes this machine reaches over SSH (`hubtune remote ...`): a name for each, and
how to reach it. Nothing secret: the user's ssh client, keys and config do the rest."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from store.errors import StoreError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
"""A remote's name: short, and never read as an option or a path."""


@dataclass(frozen=True)
class Remote:
    name: str
    host: str
    user: str | None = None
    port: int | None = None
    hubtune: str = "hubtune"
    """The command that runs hubtune there (a path or a name on its PATH)."""
    home: str | None = None
    """Its HUBTUNE_HOME; None: that machine's default."""

    def to_json(self) -> dict:
        return asdict(self)


def add_remote(store, remote: Remote) -> None:
    if not NAME.fullmatch(remote.name):
        raise StoreError(f"A remote's name is letters, digits, '.', '_' or '-' (at most 40, "
                         f"not starting with a sign); {remote.name[:60]!r} is not one.")
    with store.connection.write() as conn:
        if conn.execute("SELECT 1 FROM remotes WHERE name = ?", [remote.name]).fetchone():
            raise StoreError(f"There is a remote named {remote.name} already; "
                             f"`hubtune remote rm {remote.name}` removes it first.")
        conn.execute(
            "INSERT INTO remotes (name, host, user, port, hubtune, home, added_utc)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [remote.name, remote.host, remote.user, remote.port, remote.hubtune, remote.home,
             datetime.now(UTC).isoformat(timespec="seconds")])


def list_remotes(store) -> list[Remote]:
    rows = store.db.execute(
        "SELECT name, host, user, port, hubtune, home FROM remotes ORDER BY name").fetchall()
    return [Remote(*row) for row in rows]


def get_remote(store, name: str) -> Remote:
    for remote in list_remotes(store):
        if remote.name == name:
            return remote
    known = ", ".join(r.name for r in list_remotes(store)) or "none yet"
    raise StoreError(f"There is no remote named {name[:60]!r} (known: {known}); "
                     "`hubtune remote add NAME HOST` adds one.")


def remove_remote(store, name: str) -> None:
    get_remote(store, name)
    with store.connection.write() as conn:
        conn.execute("DELETE FROM remotes WHERE name = ?", [name])
