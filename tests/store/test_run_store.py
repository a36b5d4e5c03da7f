"""`RunStore` is composed of parts, one per responsibility, over one connection; each
part's methods are also the store's own."""

from __future__ import annotations

import inspect

from store import RunStore
from store.history import History
from store.leases import Leases
from store.metrics import Metrics
from store.queue import Queue
from store.review import Review
from store.runs import Runs

PARTS = {"runs": Runs, "leases": Leases, "metrics": Metrics, "history": History,
         "queue": Queue, "review": Review}
INTERNAL = {("runs", "update")}
"""Part methods the store keeps to itself (a lease-checked update of any column)."""


def test_every_public_method_of_every_part_is_the_stores_own(tmp_path):
    with RunStore(tmp_path / "runs.db") as store:
        for part, cls in PARTS.items():
            assert isinstance(getattr(store, part), cls)
            for name, _ in inspect.getmembers(cls, inspect.isfunction):
                if name.startswith("_") or (part, name) in INTERNAL:
                    continue
                method = getattr(store, name)
                assert method.__self__ is getattr(store, part), f"RunStore.{name}"
                assert method.__doc__ == getattr(cls, name).__doc__


def test_the_parts_share_the_stores_one_connection(tmp_path):
    with RunStore(tmp_path / "runs.db") as store:
        run_id = store.runs.create_run({"lr": 1e-3}, name="one")
        lease = store.get_run(run_id).lease
        store.leases.claim(run_id, lease, pid=1, host="h", env={})
        store.metrics.log_metrics(run_id, [(1, 0.0, "loss", 0.5, 0.0)], lease=lease)
        store.history.add_event(run_id, "hello", lease=lease)
        assert store.get_run(run_id).status == "running"
        assert store.latest_metrics(run_id) == {"loss": 0.5}
        assert [e.message for e in store.events(run_id)] == ["hello"]
        assert {id(getattr(store, p).db) for p in PARTS} == {id(store.db)}


def test_a_store_method_read_on_the_class_takes_the_store(tmp_path):
    """As a method read on a class would (tests wrap them this way)."""
    with RunStore(tmp_path / "runs.db") as store:
        run_id = RunStore.create_run(store, {}, name="via the class")
        assert RunStore.get_run(store, run_id).name == "via the class"
