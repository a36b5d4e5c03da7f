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


@migrations()
def m002_metric_packs(db: Database) -> None:
    """Every logged batch of a series also kept packed: steps as int64, values as float64.

    Reading a whole series then costs a few blobs instead of a Python tuple
    per point (100k points: tens of milliseconds less). Existing metrics are
    packed here, so older runs read the fast way too.
    """
    db["metric_packs"].create(
        {"id": int, "run_id": int, "name": str, "first_step": int, "last_step": int, "n": int,
         "steps": bytes, "vals": bytes},
        pk="id",
        foreign_keys=[("run_id", "runs", "id")],
    )
    db["metric_packs"].create_index(["run_id", "name", "first_step"])
    from store.packs import PACK_ROWS, pack

    cur = db.execute("SELECT run_id, name, step, value FROM metrics ORDER BY run_id, name, step")
    key, points = None, []

    def flush() -> None:
        packed = pack(points) if points else None
        if packed is not None:  # a series with a non-number stays on the plain rows
            db.execute("INSERT INTO metric_packs (run_id, name, first_step, last_step, n, steps, "
                       "vals) VALUES (?,?,?,?,?,?,?)", [*key, *packed])
        points.clear()

    for run_id, name, step, value in cur:
        if (run_id, name) != key or len(points) >= PACK_ROWS:
            flush()
            key = (run_id, name)
        points.append((step, value))
    flush()


@migrations()
def m003_run_ids_never_reused(db: Database) -> None:
    """`runs.id` becomes AUTOINCREMENT, and a `lease` column holds the worker's claim.

    A plain INTEGER PRIMARY KEY hands a deleted run's id to the next run, so a
    late worker of the deleted run could write into the new one and both would
    share `runs/<id>/`. SQLite can only add AUTOINCREMENT by rebuilding the table.
    The counter starts above every id this database or its data folder has seen:
    the runs left, rows that still name a run, and the `runs/<id>` folders.
    """
    conn = db.conn
    columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    conn.execute(
        "CREATE TABLE runs_new ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, status TEXT NOT NULL DEFAULT 'queued',"
        " created_utc TEXT NOT NULL, started_utc TEXT, finished_utc TEXT, parent_id INTEGER,"
        " config_json TEXT NOT NULL, env_json TEXT, model_id TEXT, task TEXT, dataset TEXT,"
        " tags_json TEXT DEFAULT '[]', notes TEXT DEFAULT '', pid INTEGER, host TEXT,"
        " heartbeat_unix FLOAT, stop_requested INTEGER DEFAULT 0, error TEXT,"
        " summary_json TEXT, output_dir TEXT, lease TEXT)"
    )
    names = ", ".join(f"[{c}]" for c in columns)
    conn.execute(f"INSERT INTO runs_new ({names}) SELECT {names} FROM runs")
    conn.execute("DROP TABLE runs")
    conn.execute("ALTER TABLE runs_new RENAME TO runs")
    conn.execute("CREATE INDEX idx_runs_status ON runs (status)")
    conn.execute("CREATE INDEX idx_runs_created_utc ON runs (created_utc)")
    highest = max(
        conn.execute(f"SELECT coalesce(max({col}), 0) FROM {table}").fetchone()[0]
        for table, col in (("runs", "id"), ("metrics", "run_id"), ("events", "run_id"),
                           ("checkpoints", "run_id"), ("metric_packs", "run_id"))
    )
    highest = max(highest, _highest_run_folder(conn))
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'runs'")
    conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('runs', ?)", [highest])



@migrations()
def m004_run_queue(db: Database) -> None:
    """What the run queue needs: each run's place in line, the slots it asks for and the
    ones it holds, its sweep, and a `settings` table (the queue's pause switch).

    `queue_rank` orders the runs `train --queue` recorded; `devices_json` lists the slots
    (`gpu0`, `cpu0`, ...) a queued or running run holds; `assigned_unix` is when they
    were given, so an assignment whose launcher died before it spawned a worker lapses.
    """
    conn = db.conn
    for column, kind in (("queue_rank", "INTEGER"), ("slots_wanted", "INTEGER"),
                         ("devices_json", "TEXT"), ("assigned_unix", "FLOAT"),
                         ("sweep_id", "TEXT")):
        conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
    conn.execute("CREATE INDEX idx_runs_status_queue_rank ON runs (status, queue_rank)")
    conn.execute("CREATE INDEX idx_runs_sweep_id ON runs (sweep_id)")
    conn.execute("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT)")


@migrations()
def m005_validation_predictions(db: Database) -> None:
    """Per-example validation results of the model each run keeps, for review.

    `val_prediction_sets` holds one row per run (the evaluation's step, how many
    examples it had, what `loss` means); `val_predictions` its rows, at most 20,000 per
    run. Both go with their run (ON DELETE CASCADE), so deleting a run needs no change.
    """
    conn = db.conn
    conn.execute(
        "CREATE TABLE val_prediction_sets ("
        " run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,"
        " step INTEGER NOT NULL, examples INTEGER NOT NULL, loss_kind TEXT NOT NULL,"
        " recorded_utc TEXT NOT NULL)")
    conn.execute(
        "CREATE TABLE val_predictions ("
        " run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
        " example INTEGER NOT NULL, predicted TEXT, label TEXT, confidence FLOAT, loss FLOAT,"
        " PRIMARY KEY (run_id, example)) WITHOUT ROWID")



@migrations()
def m006_remotes(db: Database) -> None:
    """Other machines hubtune reaches over SSH (`hubtune remote add`): how to reach each
    (the system ssh client does the rest; no secret is kept here), the hubtune command
    to run there and its HUBTUNE_HOME (empty: its default)."""
    db.conn.execute(
        "CREATE TABLE remotes (name TEXT PRIMARY KEY, host TEXT NOT NULL, user TEXT,"
        " port INTEGER, hubtune TEXT NOT NULL, home TEXT, added_utc TEXT NOT NULL)")

def _highest_run_folder(conn) -> int:
    """The largest N of a `runs/N` folder beside the database file (0 if none)."""
    from pathlib import Path

    row = conn.execute("PRAGMA database_list").fetchone()
    if not row or not row[2]:
        return 0  # an in-memory database has no folder
    folder = Path(row[2]).parent / "runs"
    try:
        return max((int(p.name) for p in folder.iterdir() if p.name.isdigit()), default=0)
    except OSError:
        return 0


KNOWN = [m.name for m in migrations.pending(Database(memory=True))]
"""Every migration's name, in order: all are pending on an empty database."""
