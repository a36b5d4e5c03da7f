"""The worker's store thread: engine events from the training thread become batched store
writes; it also heartbeats, polls the stop request and, with several ranks, watches for
another rank's failure. The training thread never waits on SQLite (except for a
checkpoint's record, so a resume never leaves a gap in the series).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path

from engine.core.events import (
    STEP_METRIC,
    CheckpointSaved,
    EvalFinished,
    Event,
    FirstStepTaken,
    Note,
    RolledBack,
    RunPrepared,
    StepLogged,
    ValidationPredicted,
)
from engine.launch.outcome import RANK_FAILURE_GRACE_S, rank_failure, record_outcome, start_next
from engine.share.live import LiveReport
from engine.training.precision import precision_label
from store import RunStore, StoreError

FLUSH_INTERVAL_S = 0.5
"""How often buffered metrics are committed: a few times a second at most."""


HEARTBEAT_INTERVAL_S = 2.0


QUEUE_CHECK_INTERVAL_S = 30.0
"""How often a training worker looks for queued runs that a dead worker's slots now fit."""


class StoreSink:
    """Buffers events from the training thread; a side thread writes them."""

    def __init__(self, db_file: Path, run_id: int, stop: threading.Event, lease: str, *,
                 watch_ranks: bool = False, report: LiveReport | None = None) -> None:
        self.db_file = db_file
        self.report = report
        """The run's trackers (train.report_to), handed what each flush committed."""
        self.status = "running"
        """The run's end as `close` was told it, for the trackers."""
        self.watch_ranks = watch_ranks
        """Several processes: look for another rank's failure at each heartbeat."""
        self.rank_failed_at: float | None = None
        self.trial = None
        """A search trial's TrialWatch (engine.runs.search): evaluations go to its study."""
        self._evals: list[tuple[int, dict]] = []
        self.watch = None
        """The run's Watcher (engine.runs.watch), fed from this thread; None: unwatched."""
        self.watch_stop: str | None = None
        """What a watch rule that stopped the run saw."""
        self.rollbacks = None
        """The loop's Rollbacks (engine.training.rollback): where a `rollback` rule's
        finding goes; None when no rule rolls back."""
        self._rewind: int | None = None
        """A rollback's step: the store's rows after it go before the next are written."""
        self._watched: list[Event] = []
        self._gpus = None
        self.run_id = run_id
        self.lease = lease
        self.stop = stop
        self._lock = threading.Lock()
        self._metrics: list[tuple] = []
        self._notes: list[tuple[str, str]] = []
        self._checkpoints: list[CheckpointSaved] = []
        self._predictions: ValidationPredicted | None = None
        """The newest per-example results: each replaces the one before, so only the
        newest is ever written."""
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._queued = 0
        """Events handed over so far; `_committed` says how many are in the database."""
        self._committed = 0
        self._committed_cv = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="store-sink", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        if self.report is not None:
            self.report.start()
        self._thread.start()

    def __call__(self, event: Event) -> None:
        now = time.time()
        with self._lock:
            if isinstance(event, EvalFinished) and self.trial is not None:
                self._evals.append((event.step, dict(event.metrics)))
            if isinstance(event, (StepLogged, EvalFinished)) and self.watch is not None:
                self._watched.append(event)
            if isinstance(event, (StepLogged, EvalFinished)):
                self._metrics += [
                    (event.step, event.epoch, name, float(value), now)
                    for name, value in event.metrics.items()
                ]
            elif isinstance(event, FirstStepTaken):
                # The step counter, as a metric: what the panel and `runs follow` show
                # until the first logged step (STEP_METRIC).
                self._metrics.append((event.step, event.epoch, STEP_METRIC, float(event.step),
                                      now))
            elif isinstance(event, Note):
                self._notes.append((event.level, event.message))
            elif isinstance(event, RunPrepared):
                if self.trial is not None:  # its pruner's warm-up is a part of these
                    self.trial.planned_steps = event.total_steps
                self._notes.append((
                    "info",
                    f"Training {event.trainable_params:,} of {event.total_params:,} parameters "
                    f"for {event.total_steps} steps on {event.device} "
                    f"({precision_label(event.precision)})",
                ))
                self._metrics.append((0, 0.0, "total_steps", float(event.total_steps), now))
            elif isinstance(event, CheckpointSaved):
                self._checkpoints.append(event)
            elif isinstance(event, ValidationPredicted):
                self._predictions = event
            elif isinstance(event, RolledBack):
                self._rolled_back(event)
            self._queued += 1
            ticket = self._queued
        if isinstance(event, (Note, RunPrepared, RolledBack)) or (isinstance(event, EvalFinished)
                                                       and self.trial is not None):
            # A few per run: committed at once, so an event's time is when it happened
            # (not up to FLUSH_INTERVAL_S later) and the TUI shows it without that delay.
            self._wake.set()
        if isinstance(event, CheckpointSaved):
            # Wait until the checkpoint and every metric before it are committed: a
            # resume starts from a recorded checkpoint, so its series has no gap.
            self._wake.set()
            with self._committed_cv:
                self._committed_cv.wait_for(
                    lambda: self._committed >= ticket or self.error is not None, timeout=60)

    def _rolled_back(self, event: RolledBack) -> None:
        """(Under the lock.) What the abandoned stretch logged is superseded by its replay:
        dropped here if not yet written, else from the store at the next flush."""
        to = event.to_step
        self._metrics = [m for m in self._metrics if m[0] <= to]
        self._checkpoints = [c for c in self._checkpoints if c.step <= to]
        if self._predictions is not None and self._predictions.step > to:
            self._predictions = None
        self._rewind = to if self._rewind is None else min(self._rewind, to)
        self._notes.append(("warning", event.message))
        if self.watch is not None:
            self._watched.append(event)

    def _loop(self) -> None:
        store = RunStore(self.db_file)  # this thread's own connection
        last_beat = 0.0
        last_queue_check = time.monotonic()
        try:
            while True:
                self._wake.wait(FLUSH_INTERVAL_S)
                self._wake.clear()
                closing = self._closing.is_set()
                self._flush(store)
                self._report_evals()
                self._check_watch(store, time.monotonic() - last_beat >= HEARTBEAT_INTERVAL_S)
                if time.monotonic() - last_beat >= HEARTBEAT_INTERVAL_S:
                    if store.file_replaced():
                        raise StoreError(f"The run database {self.db_file} was removed or "
                                         "replaced while the run trained (is HUBTUNE_HOME "
                                         "still there?); the run stops.")
                    store.heartbeat(self.run_id, self.lease)
                    if store.stop_requested(self.run_id):
                        self.stop.set()
                    if self.watch_ranks:
                        self._watch_ranks(store)
                    last_beat = time.monotonic()
                if time.monotonic() - last_queue_check >= QUEUE_CHECK_INTERVAL_S:
                    start_next(store)  # a killed worker's slots, reaped, go to the queue
                    last_queue_check = time.monotonic()
                if closing:
                    self._close_report(store)
                    return
        except BaseException as exc:  # surfaced by close(); the loop must not die silently
            self.error = exc
            self.stop.set()  # a worker that cannot record (or lost its run) stops training
            with self._committed_cv:
                self._committed_cv.notify_all()
        finally:
            store.close()

    def _report_evals(self) -> None:
        """A search trial's evaluations to its study; the pruner's stop stops the run
        (it ends `pruned`, its checkpoints and metrics kept)."""
        with self._lock:
            evals, self._evals = self._evals, []
        if self.trial is None:
            return
        for step, metrics in evals:
            try:
                pruned = self.trial.report(step, metrics)
            except Exception:  # the search's study, not the run: the run trains on
                traceback.print_exc()
                print("This run no longer reports to its search; it trains to its end.",
                      file=sys.stderr)
                self.trial = None
                return
            if pruned:
                self.stop.set()
                return

    def _check_watch(self, store: RunStore, read_gpus: bool) -> None:
        """The watch rules over the readings since the last look (and, each heartbeat,
        the run's GPUs): each finding one warning event; a `stop` one stops the run."""
        if self.watch is None:
            return
        with self._lock:
            events, self._watched = self._watched, []
        found = []
        for event in events:
            if isinstance(event, RolledBack):
                self.watch.rewind(event.to_step)
                found = []  # what was seen before is what the rollback undid
                continue
            found += (self.watch.step(event.step, event.metrics)
                      if isinstance(event, StepLogged)
                      else self.watch.evaluation(event.step, event.metrics))
        if read_gpus:
            found += self.watch.gpu(time.monotonic(), self._gpu_utilisation())
        for finding in found:
            action = finding.action
            if action == "rollback":
                action = self._ask_rollback(finding)
            message = finding.message + {
                "stop": " The run stops here (action: stop).",
                "spent": " The run stops here: train.watch.max_rollbacks "
                         f"({self.rollbacks.limit if self.rollbacks else 0}) is spent.",
                "rollback": f" Rolling back to a checkpoint at or before step "
                            f"{finding.good_step} (action: rollback).",
            }.get(action, "")
            store.add_event(self.run_id, message, "warning", lease=self.lease)
            if action in ("stop", "spent") and self.watch_stop is None:
                self.watch_stop = finding.message
                self.stop.set()

    def _ask_rollback(self, finding) -> str:
        """Hand a rollback finding to the loop: rollback, or spent (the limit reached)."""
        if self.rollbacks is None or not self.rollbacks.request(finding.rule, finding.good_step):
            return "spent"
        return "rollback"

    def _gpu_utilisation(self) -> float | None:
        """The busiest of the run's GPUs now, in percent; None without one (a CPU run)."""
        if self._gpus is None:
            from engine.cluster.gpus import GpuMonitor

            self._gpus = GpuMonitor()
        devices = self._gpus.run_devices(dict(os.environ)) if self._gpus.available else []
        readings = [r.utilisation for r in self._gpus.read(devices) if devices]
        readings = [u for u in readings if u is not None]
        return max(readings) if readings else None

    def _watch_ranks(self, store: RunStore) -> None:
        """Another rank failed: give the training thread a grace period to end on its
        own (it usually does, its next collective failing), then record the failure
        from here and end the process, which may be waiting on its dead peer."""
        failure = rank_failure(self.run_id)
        if failure is None:
            return
        self.stop.set()
        now = time.monotonic()
        if self.rank_failed_at is None:
            self.rank_failed_at = now
            return
        if now - self.rank_failed_at < RANK_FAILURE_GRACE_S:
            return
        self._flush(store)
        record_outcome(store, self.run_id, self.lease, "failed", failure[1], failure[0])
        os._exit(1)

    def _flush(self, store: RunStore) -> None:
        with self._lock:
            rewind, self._rewind = self._rewind, None
            metrics, self._metrics = self._metrics, []
            notes, self._notes = self._notes, []
            checkpoints, self._checkpoints = self._checkpoints, []
            predictions, self._predictions = self._predictions, None
            ticket = self._queued
        if rewind is not None:  # before the replay's rows
            store.truncate_after(self.run_id, rewind, lease=self.lease)
            store.drop_predictions_after(self.run_id, rewind, lease=self.lease)
        if metrics:
            store.log_metrics(self.run_id, metrics, lease=self.lease)
        if predictions is not None:
            store.replace_predictions(self.run_id, predictions.step, predictions.examples,
                                      predictions.loss_kind, predictions.rows, lease=self.lease)
        for c in checkpoints:
            store.add_checkpoint(self.run_id, c.step, c.path, c.metric, is_best=c.is_best,
                                 lease=self.lease)
        with self._committed_cv:
            self._committed = ticket
            self._committed_cv.notify_all()
        for level, message in notes:
            store.add_event(self.run_id, message, level, lease=self.lease)
        if self.report is not None:
            now = time.time()
            self.report.put(metrics, [(now, level, message) for level, message in notes],
                            rewind=rewind)
            for warning in self.report.warnings():
                store.add_event(self.run_id, warning, "warning", lease=self.lease)

    def _close_report(self, store: RunStore) -> None:
        if self.report is not None:
            self.report.close(self.status)
            for warning in self.report.warnings():
                store.add_event(self.run_id, warning, "warning", lease=self.lease)

    def close(self, status: str | None = None) -> None:
        if status is not None:
            self.status = status
        self._closing.set()
        self._wake.set()
        self._thread.join()
        if self.error is not None:
            raise self.error
