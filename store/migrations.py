"""Schema migrations, applied in order by `RunStore` on open.

Once a migration has landed it is never edited: change the schema by adding
`m00N_...` below. Tests apply every prefix of this list and migrate forward.
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATION_SET = "hubtune"
migrations = Migrations(MIGRATION_SET)


@migrations()
def m001_create_runs(db: Database) -> None:
    db["runs"].create(
        {
            "id": int,
            "name": str,
            "status": str,
            "created_utc": str,
            "started_utc": str,
            "finished_utc": str,
            "parent_id": int,
            "config_json": str,
            "env_json": str,
            "model_id": str,
            "task": str,
            "dataset": str,
            "tags_json": str,
            "notes": str,
            "pid": int,
            "host": str,
            "heartbeat_unix": float,
            "stop_requested": int,
            "error": str,
            "summary_json": str,
            "output_dir": str,
        },
        pk="id",
        not_null={"status", "created_utc", "config_json"},
        defaults={"status": "queued", "stop_requested": 0, "tags_json": "[]", "notes": ""},
    )
    db["runs"].create_index(["status"])
    db["runs"].create_index(["created_utc"])
    db["metrics"].create(
        {
            "run_id": int,
            "step": int,
            "epoch": float,
            "name": str,
            "value": float,
            "time_unix": float,
        },
        foreign_keys=[("run_id", "runs", "id")],
    )
    # Series reads are "one name of one run, ordered by step".
    db["metrics"].create_index(["run_id", "name", "step"])
    db["events"].create(
        {"id": int, "run_id": int, "time_unix": float, "level": str, "message": str},
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["events"].create_index(["run_id", "id"])
    db["checkpoints"].create(
        {
            "id": int,
            "run_id": int,
            "step": int,
            "path": str,
            "metric": float,
            "is_best": int,
            "created_utc": str,
        },
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
        defaults={"is_best": 0},
    )
    db["checkpoints"].create_index(["run_id", "step"])


KNOWN = [m.name for m in migrations._migrations]
