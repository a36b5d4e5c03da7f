"""`RunStore`: the one object through which runs are written and read.

It opens the database (`store.connection`) and composes the store's parts, one per
responsibility, each a plain object over that one connection:

- `runs`: the runs themselves (create, read, list, edit, delete, compare);
- `leases`: a run's worker (claim, heartbeat, stop request, end, reaping);
- `metrics`: metric values, appended in batches and read as series;
- `history`: a run's events and checkpoints;
- `queue`: the run queue's order, slots and pause switch;
- `review`: per-example validation results.

Each part's methods are also the store's own (`store.claim` is `store.leases.claim`),
which is how the rest of hubtune calls them. Every process opens its own `RunStore`:
a sqlite3 connection belongs to the thread that opened it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from store.connection import StoreConnection
from store.history import History
from store.leases import Leases
from store.metrics import Metrics
from store.paths import db_path
from store.queue import Queue
from store.review import Review
from store.runs import Runs


class _Part:
    """A method of the store that is one of its parts' methods: read on a store, it is
    that part's bound method (its signature and docstring with it); read on the class,
    a function of a store that calls it (as a method read on a class would be)."""

    def __init__(self, part: str, method: Any) -> None:
        self.part, self.method = part, method
        self.__doc__ = method.__doc__

    def __set_name__(self, owner: type, name: str) -> None:
        if name != self.method.__name__:
            raise TypeError(f"RunStore.{name} names {self.method.__qualname__}")

    def __get__(self, store: RunStore | None, owner: type | None = None) -> Any:
        if store is None:
            part, name = self.part, self.method.__name__

            @functools.wraps(self.method)
            def unbound(store: RunStore, *args: Any, **kwargs: Any) -> Any:
                return getattr(getattr(store, part), name)(*args, **kwargs)

            return unbound
        return getattr(getattr(store, self.part), self.method.__name__)


class RunStore:
    """Run history in one SQLite file, migrated to the latest schema on open."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.connection = StoreConnection(Path(path) if path is not None else db_path())
        self.path, self.db = self.connection.path, self.connection.db
        self.runs = Runs(self.connection)
        self.leases = Leases(self.connection, self.runs)
        self.metrics = Metrics(self.connection)
        self.history = History(self.connection)
        self.queue = Queue(self.connection)
        self.review = Review(self.connection)

    def file_replaced(self) -> bool:
        """Whether the database file was removed or replaced since this store opened it."""
        return self.connection.file_replaced()

    @property
    def schema_version(self) -> list[str]:
        return self.connection.schema_version

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    create_run = _Part("runs", Runs.create_run)
    get_run = _Part("runs", Runs.get_run)
    set_notes = _Part("runs", Runs.set_notes)
    set_tags = _Part("runs", Runs.set_tags)
    list_runs = _Part("runs", Runs.list_runs)
    count_runs = _Part("runs", Runs.count_runs)
    delete_run = _Part("runs", Runs.delete_run)
    data_version = _Part("runs", Runs.data_version)
    compare = _Part("runs", Runs.compare)

    claim = _Part("leases", Leases.claim)
    finish = _Part("leases", Leases.finish)
    set_status = _Part("leases", Leases.set_status)
    set_pid = _Part("leases", Leases.set_pid)
    requeue = _Part("leases", Leases.requeue)
    recorded_home = _Part("leases", Leases.recorded_home)
    fail_launch = _Part("leases", Leases.fail_launch)
    truncate_after = _Part("leases", Leases.truncate_after)
    heartbeat = _Part("leases", Leases.heartbeat)
    request_stop = _Part("leases", Leases.request_stop)
    stop_requested = _Part("leases", Leases.stop_requested)
    reap_interrupted = _Part("leases", Leases.reap_interrupted)

    log_metrics = _Part("metrics", Metrics.log_metrics)
    metric_rows = _Part("metrics", Metrics.metric_rows)
    last_step = _Part("metrics", Metrics.last_step)
    metric_names = _Part("metrics", Metrics.metric_names)
    series = _Part("metrics", Metrics.series)
    latest_metrics = _Part("metrics", Metrics.latest_metrics)

    add_event = _Part("history", History.add_event)
    events = _Part("history", History.events)
    event_counts = _Part("history", History.event_counts)
    add_checkpoint = _Part("history", History.add_checkpoint)
    checkpoints = _Part("history", History.checkpoints)

    queue_state = _Part("queue", Queue.queue_state)
    has_waiting = _Part("queue", Queue.has_waiting)
    assign_slots = _Part("queue", Queue.assign_slots)
    waiting_ids = _Part("queue", Queue.waiting_ids)
    move_in_queue = _Part("queue", Queue.move_in_queue)
    dequeue = _Part("queue", Queue.dequeue)
    queue_paused = _Part("queue", Queue.queue_paused)
    set_queue_paused = _Part("queue", Queue.set_queue_paused)

    replace_predictions = _Part("review", Review.replace_predictions)
    drop_predictions_after = _Part("review", Review.drop_predictions_after)
    prediction_set = _Part("review", Review.prediction_set)
    worst_examples = _Part("review", Review.worst_examples)
    example_results = _Part("review", Review.example_results)
