"""RunStore on a real SQLite file: lifecycle, queries, comparison, safety."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time

import pytest

from store import RunStore, SeriesTail, StoreError
from store.migrations import KNOWN


def _run(store: RunStore, name="r", **kw) -> int:
    return store.create_run({"model": {"id": "m"}, "train": {"lr": 1}}, name=name, **kw)


def test_pragmas_wal_and_migrations_applied(store):
    assert store.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.schema_version == ["m001_create_runs", "m002_metric_packs",
                                    "m003_run_ids_never_reused", "m004_run_queue",
                                    "m005_validation_predictions", "m006_remotes"]
    assert {"runs", "metrics", "events", "checkpoints"} <= set(store.db.table_names())


def test_reopening_applies_nothing_twice(store):
    before = store.db.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0]
    again = RunStore(store.path)
    assert again.db.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0] == before
    again.close()


def test_lifecycle_from_queued_to_completed(store):
    run_id = _run(store, model_id="org/m", task="text-classification")
    assert store.get_run(run_id).status == "queued"
    store.claim(run_id, store.get_run(run_id).lease, pid=os.getpid(), host="h", env={"python": "3"})
    run = store.get_run(run_id)
    assert run.status == "running" and run.started_utc and run.env == {"python": "3"}
    store.finish(run_id, "completed", summary={"final_accuracy": 0.9})
    run = store.get_run(run_id)
    assert run.status == "completed" and run.summary == {"final_accuracy": 0.9}
    assert run.finished_utc >= run.started_utc
    assert run.output_dir.endswith(f"runs/{run_id}")


def test_metrics_batch_and_series_downsampling_keeps_the_last_point(store):
    run_id = _run(store)
    n = store.log_metrics(run_id, [(s, s / 100, "loss", 1.0 / (s + 1), 0.0) for s in range(1000)])
    assert n == 1000
    full = store.series(run_id, "loss")
    assert full.steps == list(range(1000))
    assert full.values[10] == pytest.approx(1 / 11)
    small = store.series(run_id, "loss", max_points=50)
    assert len(small) <= 51
    assert small.steps[0] == 0 and small.last == (999, pytest.approx(1 / 1000))
    assert small.steps == sorted(small.steps)
    assert store.series(run_id, "loss", after_step=997).steps == [998, 999]
    assert len(store.series(run_id, "missing")) == 0
    assert store.latest_metrics(run_id) == {"loss": pytest.approx(1 / 1000)}


def test_latest_metrics_takes_each_names_last_step_and_only_that_runs(store):
    run_id, other = _run(store), _run(store, name="other")
    rows = [(s, 0.0, name, float(s) + offset, 0.0)
            for s in range(1, 201) for offset, name in enumerate(("loss", "lr", "val_acc", "b"))]
    random.Random(3).shuffle(rows)  # logged out of step order: the last step still wins
    store.log_metrics(run_id, rows)
    store.log_metrics(other, [(500, 0.0, "loss", -1.0, 0.0), (1, 0.0, "zzz", 7.0, 0.0)])
    assert store.latest_metrics(run_id) == {"loss": 200.0, "lr": 201.0, "val_acc": 202.0,
                                            "b": 203.0}
    # The same step logged again (a resumed run replaying it): the later row wins.
    store.log_metrics(run_id, [(200, 0.0, "loss", 9.5, 0.0)])
    assert store.latest_metrics(run_id)["loss"] == 9.5
    assert store.latest_metrics(other) == {"loss": -1.0, "zzz": 7.0}
    assert store.latest_metrics(_run(store, name="empty")) == {}


def test_latest_metrics_work_does_not_grow_with_the_run(store):
    """Counted in SQLite VM instructions, not time: the TUI asks twice a second."""
    run_id = _run(store)

    def instructions() -> int:
        ticks = []
        store.db.conn.set_progress_handler(lambda: ticks.append(1), 100)
        try:
            store.latest_metrics(run_id)
        finally:
            store.db.conn.set_progress_handler(None, 100)
        return len(ticks)

    names = ("loss", "lr", "samples_per_s", "tokens_per_s")
    store.log_metrics(run_id, [(s, 0.0, n, 1.0, 0.0) for s in range(1000) for n in names])
    short = instructions()
    store.log_metrics(run_id, [(s, 0.0, n, 1.0, 0.0) for s in range(1000, 20_000)
                               for n in names])
    long = instructions()
    assert long <= short + 2, f"{short * 100} instructions at 1k steps, {long * 100} at 20k"


def test_data_version_moves_when_another_connection_commits(store):
    watcher = RunStore(store.path)
    try:
        before = watcher.data_version()
        assert watcher.data_version() == before, "nothing written: nothing changed"
        run_id = _run(store)
        after_create = watcher.data_version()
        assert after_create != before
        watcher.add_event(run_id, "its own write")  # a poller's own writes do not count
        assert watcher.data_version() == after_create
        store.log_metrics(run_id, [(1, 0.0, "loss", 1.0, 0.0)])
        assert watcher.data_version() != after_create
    finally:
        watcher.close()


def test_series_tail_reads_only_new_points_and_matches_a_full_read(store):
    run_id = _run(store)
    tail = SeriesTail(run_id, "loss")
    assert len(tail.read(store)) == 0
    for start in range(0, 3000, 250):
        store.log_metrics(run_id, [(s, 0.0, "loss", 1.0 / (s + 1), 0.0)
                                   for s in range(start, start + 250)])
        followed = tail.read(store, max_points=200)
        assert followed == store.series(run_id, "loss", max_points=200)
    whole = tail.read(store)
    assert whole.steps == list(range(3000))
    whole.steps.append(-1)  # the caller's copy: the tail itself is untouched
    assert tail.read(store).steps[-1] == 2999


def _plain(store: RunStore, run_id: int, name: str, after_step: int = -1):
    """The series as the plain rows hold it: what the packed read must equal."""
    rows = store.db.conn.execute(
        "SELECT step, value FROM metrics WHERE run_id = ? AND name = ? AND step > ?"
        " ORDER BY step, rowid", [run_id, name, after_step]).fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


def _packs(store: RunStore, run_id: int) -> int:
    return store.db.conn.execute("SELECT count(*) FROM metric_packs WHERE run_id = ?",
                                 [run_id]).fetchone()[0]


def test_packed_series_equal_the_plain_rows_in_any_logging_order(store):
    import random

    run_id = _run(store)
    rng = random.Random(0)
    steps = list(range(3000))
    chunks = [steps[i:i + 250] for i in range(0, 3000, 250)]
    rng.shuffle(chunks)  # batches out of step order, as a resumed worker could log them
    for chunk in chunks:
        rng.shuffle(chunk)
        store.log_metrics(run_id, [(s, None, "loss", rng.random(), 0.0) for s in chunk]
                          + [(s, None, "acc", s / 3000, 0.0) for s in chunk[:10]])
    assert _packs(store, run_id) == 2 * len(chunks)
    for name in ("loss", "acc"):
        for after in (-1, 0, 1234, 2999):
            got = store.series(run_id, name, after_step=after)
            assert (got.steps, got.values) == _plain(store, run_id, name, after)
    assert store.series(run_id, "loss").steps == steps


def test_truncate_after_trims_packs_and_a_missing_pack_falls_back(store):
    run_id = _run(store)
    for start in range(0, 1000, 100):
        store.log_metrics(run_id, [(s, None, "loss", s / 7, 0.0) for s in range(start,
                                                                                 start + 100)])
    store.truncate_after(run_id, 549)  # inside the sixth pack
    got = store.series(run_id, "loss")
    assert got.steps == list(range(550)) and (got.steps, got.values) == _plain(store, run_id,
                                                                               "loss")
    assert _packs(store, run_id) == 6
    # A value that is not a number cannot be packed: that series reads the plain rows.
    store.log_metrics(run_id, [(550, None, "loss", None, 0.0), (551, None, "loss", 2.0, 0.0)])
    got = store.series(run_id, "loss")
    assert got.steps[-2:] == [550, 551] and got.values[-2:] == [None, 2.0]


def test_migration_packs_metrics_logged_before_it(tmp_path):
    from sqlite_utils import Database

    from store.migrations import migrations

    path = tmp_path / "old.db"
    db = Database(path)
    migrations.apply(db, stop_before="m002_metric_packs")
    db.execute("INSERT INTO runs (id, status, created_utc, config_json) VALUES (1, 'completed',"
               " '2026-01-01', '{}')")
    db.conn.executemany("INSERT INTO metrics (run_id, step, epoch, name, value, time_unix) "
                        "VALUES (1, ?, 0, ?, ?, 0)",
                        [(s, n, s * 0.5) for s in range(10_000) for n in ("loss", "lr")])
    db.conn.commit()
    db.conn.close()
    store = RunStore(path)
    assert _packs(store, 1) == 2 * 3  # 10,000 points per series in packs of 4,096
    for name in ("loss", "lr"):
        got = store.series(1, name)
        assert got.steps == list(range(10_000)) and got.values[-1] == 9999 * 0.5
    store.close()


def test_list_filters_search_sort_and_paging(store):
    a = _run(store, "alpha", model_id="org/bert", task="text-classification", tags=["x"])
    b = _run(store, "beta", model_id="org/vit", task="image-classification")
    c = _run(store, "gamma", model_id="org/bert", task="regression")
    store.finish(b, "failed", error="boom")
    assert [r.id for r in store.list_runs()] == [c, b, a]
    assert [r.id for r in store.list_runs(sort="name")] == [a, b, c]
    assert [r.id for r in store.list_runs(status="failed")] == [b]
    assert [r.id for r in store.list_runs(model="bert")] == [c, a]
    assert [r.id for r in store.list_runs(search="gam")] == [c]
    assert [r.id for r in store.list_runs(tag="x")] == [a]
    assert [r.id for r in store.list_runs(task="regression")] == [c]
    assert [r.id for r in store.list_runs(limit=1, offset=1)] == [b]
    with pytest.raises(StoreError, match="Cannot sort runs by 'colour'"):
        store.list_runs(sort="colour")


def test_compare_lists_only_differing_config_keys(store):
    a = store.create_run({"model": {"id": "m"}, "train": {"lr": 1, "epochs": 3}})
    b = store.create_run({"model": {"id": "m"}, "train": {"lr": 2, "epochs": 3}})
    store.finish(a, "completed", summary={"final_accuracy": 0.8})
    store.finish(b, "completed", summary={"final_accuracy": 0.9})
    cmp = store.compare([a, b])
    assert cmp.config_diff == {"train.lr": (1, 2)}
    assert cmp.metrics["final_accuracy"] == (0.8, 0.9)
    with pytest.raises(StoreError, match="at least two"):
        store.compare([a])


def test_delete_removes_rows_and_files(store):
    run_id = _run(store)
    store.log_metrics(run_id, [(1, 0.0, "loss", 1.0, 0.0)])
    store.add_event(run_id, "hello")
    folder = store.get_run(run_id).output_dir
    os.makedirs(folder)
    store.finish(run_id, "completed")
    store.delete_run(run_id)
    assert not os.path.exists(folder)
    assert store.db.execute("SELECT count(*) FROM metrics").fetchone()[0] == 0
    with pytest.raises(StoreError, match=f"There is no run {run_id}"):
        store.get_run(run_id)


def test_running_runs_cannot_be_deleted(store):
    run_id = _run(store)
    store.claim(run_id, store.get_run(run_id).lease, pid=os.getpid(), host="h", env={})
    with pytest.raises(StoreError, match="stop it before deleting"):
        store.delete_run(run_id)


def test_stale_run_with_dead_pid_is_marked_interrupted(store):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = _run(store, "gone")
    store.claim(gone, store.get_run(gone).lease, pid=dead.pid, host=socket.gethostname(), env={})
    alive = _run(store, "alive")
    store.claim(alive, store.get_run(alive).lease, pid=os.getpid(), host=socket.gethostname(), env={})
    store.db.execute("UPDATE runs SET heartbeat_unix = ?", [time.time() - 3600])
    store.db.conn.commit()
    assert store.reap_interrupted(stale_after_s=30) == [gone]
    assert store.get_run(gone).status == "interrupted"
    assert store.get_run(alive).status == "running"


def test_a_file_that_is_not_sqlite_is_refused_and_untouched(tmp_path):
    bogus = tmp_path / "hubtune.db"
    bogus.write_text("not a database, my notes\n")
    before = bogus.read_bytes()
    with pytest.raises(StoreError, match="is not a hubtune database"):
        RunStore(bogus)
    assert bogus.read_bytes() == before


def test_a_newer_schema_is_refused(store):
    store.db["_sqlite_migrations"].insert(
        {"migration_set": "hubtune", "name": "m999_from_the_future", "applied_at": "x"})
    store.db.conn.commit()
    with pytest.raises(StoreError, match="newer hubtune"):
        RunStore(store.path)


def test_unwritable_data_directory_is_named(tmp_path):
    if os.geteuid() == 0:
        target = tmp_path / "file-not-dir"
        target.write_text("x")
        with pytest.raises(StoreError, match="file-not-dir is a file, not a folder; set HUBTUNE_HOME"):
            RunStore(target / "sub" / "hubtune.db")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(StoreError, match="is not writable"):
            RunStore(locked / "hubtune.db")


def test_two_processes_opening_a_fresh_database_do_not_race(tmp_path):
    path = tmp_path / "race.db"
    code = (
        "import sys; from store import RunStore; s = RunStore(sys.argv[1]); "
        "s.create_run({'a': 1}); print(s.schema_version)"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    s = RunStore(path)
    assert s.count_runs() == 4
    assert s.db.execute("SELECT count(*) FROM _sqlite_migrations").fetchone()[0] == len(KNOWN)


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "load.db"
    RunStore(path).close()
    code = (
        "import sys; from store import RunStore; s = RunStore(sys.argv[1]); "
        "r = s.create_run({'w': sys.argv[2]}); "
        "[(s.log_metrics(r, [(i * 50 + j, 0.0, 'loss', 1.0, 0.0) for j in range(50)]), "
        "s.add_event(r, str(i))) for i in range(40)]"
    )
    writers = [subprocess.Popen([sys.executable, "-c", code, str(path), str(w)],
                                stderr=subprocess.PIPE, text=True) for w in range(4)]
    reader = RunStore(path)
    while any(w.poll() is None for w in writers):
        for run in reader.list_runs():
            reader.series(run.id, "loss", max_points=100)
    errors = [w.stderr.read() for w in writers]
    assert all(w.returncode == 0 for w in writers), errors
    assert not any("locked" in e for e in errors)
    assert reader.db.execute("SELECT count(*) FROM metrics").fetchone()[0] == 4 * 40 * 50
    assert reader.db.execute("SELECT count(*) FROM events").fetchone()[0] == 4 * 40
    assert reader.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_connection_is_plain_sqlite(store):
    assert isinstance(store.db.conn, sqlite3.Connection)


def test_migrating_from_every_earlier_schema(tmp_path):
    from sqlite_utils import Database

    from store.migrations import KNOWN, migrations

    for k, name in enumerate(KNOWN):
        path = tmp_path / f"v{k}.db"
        db = Database(path)
        migrations.apply(db, stop_before=name)  # the schema as it was before `name`
        db.conn.close()
        store = RunStore(path)
        assert store.schema_version == KNOWN
        run_id = store.create_run({"a": 1})
        store.log_metrics(run_id, [(1, 0.0, "loss", 1.0, 0.0)])
        store.close()


def test_writer_killed_mid_batch_leaves_earlier_commits_intact(tmp_path):
    import signal

    path = tmp_path / "crash.db"
    RunStore(path).close()
    code = (
        "import sys; from store import RunStore; s = RunStore(sys.argv[1]); r = s.create_run({});"
        "s.log_metrics(r, [(i, 0.0, 'loss', 1.0, 0.0) for i in range(1000)]);"
        "print('committed', flush=True);\n"
        "while True: s.log_metrics(r, [(i, 0.0, 'x', 1.0, 0.0) for i in range(200_000)])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "committed"
    time.sleep(0.3)  # let it get into the middle of a large batch
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    store = RunStore(path)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert len(store.series(1, "loss")) == 1000
    assert len(store.series(1, "x")) % 200_000 == 0  # whole batches or none


def test_deleting_a_parent_keeps_its_fork(store):
    parent = store.create_run({"train": {"lr": 1}}, name="base")
    child = store.create_run({"train": {"lr": 2}}, name="base-fork", parent_id=parent)
    assert store.get_run(child).parent_id == parent
    store.finish(parent, "completed")
    store.delete_run(parent)
    assert store.get_run(child).parent_id is None


def test_a_second_store_in_a_process_keeps_the_wal_of_the_first(tmp_path):
    """Closing any descriptor of the database file drops every POSIX lock the process
    holds on it, SQLite's included. Opening a second store (the TUI's poll thread, a
    worker's writer thread) must not do that: a worker exiting next would take itself
    for the last user and delete the WAL under the first store, whose reads then fail
    with "disk I/O error" or return stale rows (seen as a resumed run stuck `queued`)."""
    path = tmp_path / "shared.db"
    first = RunStore(path)
    run_id = first.create_run({"a": 1})
    RunStore(path).close()  # as another thread of this process does
    code = ("import sys; from store import RunStore; s = RunStore(sys.argv[1]); "
            "s.finish(int(sys.argv[2]), 'completed'); s.close()")
    subprocess.run([sys.executable, "-c", code, str(path), str(run_id)], check=True,
                   timeout=60)
    assert (tmp_path / "shared.db-wal").exists() and (tmp_path / "shared.db-shm").exists()
    assert first.get_run(run_id).status == "completed"  # the other process's write is seen
    with sqlite3.connect(path) as fresh:
        assert fresh.execute("SELECT status FROM runs").fetchone()[0] == "completed"
