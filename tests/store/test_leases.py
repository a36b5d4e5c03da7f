"""One worker per run, ever: leases, atomic claims, and run ids that are never reused."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3

import pytest

from store import LeaseLost, RunStore, StoreError


def _stopped_run(store: RunStore) -> int:
    run_id = store.create_run({"x": 1}, name="r")
    store.claim(run_id, store.get_run(run_id).lease, pid=os.getpid(), host="h", env={})
    store.finish(run_id, "stopped")
    return run_id


def test_deleted_ids_are_never_handed_out_again(store):
    ids = [store.create_run({}) for _ in range(3)]
    store.delete_run(ids[-1])
    store.delete_run(ids[-2])
    assert store.create_run({}) == ids[-1] + 1


def test_migration_starts_ids_above_every_id_the_old_database_saw(tmp_path):
    from sqlite_utils import Database

    from store.migrations import migrations

    path = tmp_path / "hubtune.db"
    db = Database(path)
    migrations.apply(db, stop_before="m003_run_ids_never_reused")
    for i in range(1, 6):
        db.execute("INSERT INTO runs (id, name, status, created_utc, config_json)"
                   " VALUES (?, ?, 'completed', 'x', '{}')", [i, f"r{i}"])
    db.execute("INSERT INTO events (run_id, time_unix, level, message) VALUES (9, 0, 'info', 'x')")
    db.execute("DELETE FROM runs WHERE id >= 4")  # run 5 deleted: a plain rowid would hand out 4
    db.conn.commit()
    db.conn.close()
    (tmp_path / "runs" / "12").mkdir(parents=True)  # a folder left by a run deleted long ago

    store = RunStore(path)
    assert [r.name for r in store.list_runs(sort="id")] == ["r1", "r2", "r3"]
    assert store.create_run({}) == 13
    # the rebuilt table keeps its constraints and indexes
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute("INSERT INTO runs (name, created_utc) VALUES ('x', 'y')")
    indexes = {r[1] for r in store.db.execute("PRAGMA index_list(runs)").fetchall()}
    assert {"idx_runs_status", "idx_runs_created_utc"} <= indexes


def test_only_the_current_lease_claims_a_run_and_only_once(store):
    run_id = store.create_run({})
    lease = store.get_run(run_id).lease
    with pytest.raises(LeaseLost, match="another worker"):
        store.claim(run_id, "not-the-lease", pid=1, host="h", env={})
    store.claim(run_id, lease, pid=os.getpid(), host="h", env={})
    with pytest.raises(LeaseLost, match="already running"):
        store.claim(run_id, lease, pid=os.getpid(), host="h", env={})
    assert store.get_run(run_id).status == "running"


def test_a_superseded_worker_can_no_longer_write(store):
    run_id = _stopped_run(store)
    old = store.get_run(run_id).lease
    new = store.requeue(run_id)
    assert new != old
    for write in (
        lambda: store.log_metrics(run_id, [(1, 0.0, "loss", 1.0, 0.0)], lease=old),
        lambda: store.add_event(run_id, "late", lease=old),
        lambda: store.add_checkpoint(run_id, 1, "/x", None, lease=old),
        lambda: store.heartbeat(run_id, old),
        lambda: store.finish(run_id, "completed", lease=old),
        lambda: store.truncate_after(run_id, 0, lease=old),
    ):
        with pytest.raises(LeaseLost):
            write()
    assert store.get_run(run_id).status == "queued"
    assert store.series(run_id, "loss").steps == []
    assert [e.message for e in store.events(run_id)] == []


def test_a_deleted_runs_worker_cannot_claim_or_write(store):
    run_id = store.create_run({})
    lease = store.get_run(run_id).lease
    store.delete_run(run_id)
    with pytest.raises(LeaseLost, match="deleted"):
        store.claim(run_id, lease, pid=1, host="h", env={})
    with pytest.raises(LeaseLost, match="deleted"):
        store.log_metrics(run_id, [(1, 0.0, "loss", 1.0, 0.0)], lease=lease)
    assert store.db.execute("SELECT count(*) FROM metrics").fetchone()[0] == 0


def test_resume_of_a_run_that_is_not_finished_is_one_sentence(store):
    run_id = store.create_run({})
    with pytest.raises(StoreError, match=f"Run {run_id} is queued"):
        store.requeue(run_id)
    with pytest.raises(StoreError, match="There is no run 999"):
        store.requeue(999)


def test_names_tags_and_notes_are_capped_and_one_line(store):
    with pytest.raises(StoreError, match="control character"):
        store.create_run({}, name="evil\x1b]0;title\x07")
    with pytest.raises(StoreError, match="keep it to 200"):
        store.create_run({}, name="x" * 201)
    run_id = store.create_run({}, name="ok")
    with pytest.raises(StoreError, match="control character"):
        store.set_tags(run_id, ["a\nb"])
    with pytest.raises(StoreError, match="at most 32 tags"):
        store.set_tags(run_id, [f"t{i}" for i in range(33)])
    with pytest.raises(StoreError, match="keep tags to 64"):
        store.set_tags(run_id, ["t" * 65])
    store.set_notes(run_id, "two\nlines")
    with pytest.raises(StoreError, match="control character"):
        store.set_notes(run_id, "bell\x07")
    with pytest.raises(StoreError, match="keep it to 10,000"):
        store.set_notes(run_id, "n" * 10_001)
    run = store.get_run(run_id)
    assert (run.name, run.tags, run.notes) == ("ok", (), "two\nlines")


# -- races between processes -------------------------------------------------

ROUNDS = 60


def _racer(path: str, run_ids: list[int], action: str, barrier, results) -> None:
    store = RunStore(path)
    for run_id in run_ids:
        barrier.wait()
        try:
            if action == "resume":
                lease = store.requeue(run_id)
                store.claim(run_id, lease, pid=os.getpid(), host="h", env={})
                results.put((run_id, action, "claimed"))
            else:
                store.delete_run(run_id)
                results.put((run_id, action, "deleted"))
        except StoreError:  # LeaseLost included
            results.put((run_id, action, "refused"))
    store.close()


def _race(path, run_ids, actions):
    ctx = mp.get_context("fork")
    barrier, results = ctx.Barrier(len(actions)), ctx.Queue()
    procs = [ctx.Process(target=_racer, args=(str(path), run_ids, a, barrier, results))
             for a in actions]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in range(len(run_ids) * len(actions))]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    by_run: dict[int, list[tuple[str, str]]] = {}
    for run_id, action, result in outcomes:
        by_run.setdefault(run_id, []).append((action, result))
    return by_run


def test_two_resumes_racing_never_give_a_run_two_workers(store):
    run_ids = [_stopped_run(store) for _ in range(ROUNDS)]
    by_run = _race(store.path, run_ids, ["resume", "resume"])
    for run_id in run_ids:
        results = sorted(r for _, r in by_run[run_id])
        assert results == ["claimed", "refused"], (run_id, results)
        assert store.get_run(run_id).status == "running"


def test_resume_racing_rm_never_leaves_a_worker_on_a_deleted_run(store):
    run_ids = [_stopped_run(store) for _ in range(ROUNDS)]
    by_run = _race(store.path, run_ids, ["resume", "rm"])
    seen = set()
    for run_id in run_ids:
        outcome = dict(by_run[run_id])
        seen.add((outcome["resume"], outcome["rm"]))
        exists = store.db.execute("SELECT count(*) FROM runs WHERE id = ?",
                                  [run_id]).fetchone()[0]
        # the worker claimed a live run (rm refused), or the run is gone and nobody holds it
        assert (outcome["resume"], outcome["rm"], exists) in {
            ("claimed", "refused", 1), ("refused", "deleted", 0)}, (run_id, outcome)
    assert seen  # every round ended in one of the two allowed ways
