"""The runs themselves: creating, reading, listing, editing, deleting and comparing
them. One part of `RunStore` (store.run_store); the worker's side of a run (its
lease, its end) is `store.leases`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from store.checks import (  # noqa: F401 - MAX_* and the checks are the store's API
    MAX_NAME_CHARS,
    MAX_NOTE_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    check_name,
    check_note,
    check_tags,
)
from store.common import (  # noqa: F401 - the statuses are the store's API
    STATUSES,
    TERMINAL_STATUSES,
    check_lease,
    check_run_id,
    new_lease,
    no_such_run,
    utc_now,
)
from store.errors import StoreError
from store.paths import run_dir
from store.records import Comparison, Run

if TYPE_CHECKING:
    from store.connection import StoreConnection

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

class Runs:
    """The `runs` table: one row per run, its config, status, notes and tags."""

    def __init__(self, connection: StoreConnection) -> None:
        self.db, self._write = connection.db, connection.write

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
                    new_lease(),
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
        row = self.db.execute("SELECT * FROM runs WHERE id = ?", [check_run_id(run_id)]).fetchone()
        if row is None:
            raise no_such_run(run_id)
        cols = [d[0] for d in self.db.execute("SELECT * FROM runs LIMIT 0").description]
        return Run.from_row(dict(zip(cols, row, strict=True)))

    def update(self, run_id: int, *, lease: str | None = None, **values: Any) -> None:
        sets, run_id = ", ".join(f"{k} = ?" for k in values), check_run_id(run_id)
        with self._write() as conn:
            if lease is not None:
                check_lease(conn, run_id, lease)
            cur = conn.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*values.values(), run_id])
            if cur.rowcount == 0:
                raise no_such_run(run_id)

    def set_notes(self, run_id: int, notes: str) -> None:
        self.update(run_id, notes=check_note(notes))

    def set_tags(self, run_id: int, tags: Sequence[str]) -> None:
        self.update(run_id, tags_json=json.dumps(sorted(set(check_tags(tags)))))

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
                               [check_run_id(run_id)]).fetchone()
            if row is None:
                raise no_such_run(run_id)
            status, output_dir = row
            if status == "running":
                raise StoreError(f"Run {run_id} is still running; stop it before deleting it.")
            for table in ("metrics", "metric_packs", "events", "checkpoints"):
                conn.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            conn.execute("UPDATE runs SET parent_id = NULL WHERE parent_id = ?", [run_id])
            conn.execute("DELETE FROM runs WHERE id = ?", [run_id])
        if remove_files and output_dir:
            shutil.rmtree(output_dir, ignore_errors=True)

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the database
        (SQLite's data_version): a cheap "has anything changed?" for pollers."""
        return self.db.conn.execute("PRAGMA data_version").fetchone()[0]

    def compare(self, run_ids: Sequence[int]) -> Comparison:
        """Config keys that differ and summary metrics, one column per run."""
        if len(run_ids) < 2:
            raise StoreError("Compare needs at least two run ids.")
        return compare_records(tuple(self.get_run(i) for i in run_ids))


def compare_records(runs: Sequence[Run]) -> Comparison:
    """`runs` side by side, wherever they were read (this store, or another machine's
    over SSH): the config keys whose values differ, and every summary metric."""
    runs = tuple(runs)
    flat = [_flatten(r.config) for r in runs]
    keys = sorted(set().union(*flat))
    diff = {
        k: tuple(f.get(k) for f in flat)
        for k in keys
        if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1
    }
    names = sorted(set().union(*(r.summary for r in runs)))
    metrics = {n: tuple(r.summary.get(n) for r in runs) for n in names}
    return Comparison(runs=runs, config_diff=diff, metrics=metrics)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


