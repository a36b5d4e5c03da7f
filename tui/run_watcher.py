"""What the runs screen shows, read from the store on the screen's poll thread.

The watcher posts only changes: an idle or slowly-changing store costs the UI thread
nothing, and a run training beside the TUI keeps its cores. The selected run's
curves and event log are followed from the last point seen, never re-read, so a poll
costs the same at step 100 and at step 100,000. No widget is touched here: results
go out as messages (`RunsRefreshed`, `RunDetailRefreshed`, `QueueMoved`).

A TUI left open keeps the run queue moving: when a reap frees the slots of a run whose
worker process died, and when the screen asks (the queue resumed or reordered), the
watcher starts what fits (`engine.launch.start.start_queued`), here on the poll thread, never
on the UI's.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from engine.core.events import ROLLED_BACK
from store import Run, RunStore, SeriesTail
from tui.formatting import best_metric, duration, main_metric
from tui.messages import QueueMoved, RunDetailRefreshed, RunsRefreshed
from tui.queue_view import QueueView, read_queue, read_sweeps
from tui.watch_badges import read_watched

DETAIL_EVERY_S = 1.0
"""The fastest a running run's panel is redrawn."""
LIST_EVERY_S = 2.0
"""The fastest the run list is re-read while other processes write to the store."""
LIST_AT_LEAST_EVERY_S = 10.0
"""The list is re-read this often whatever happens (a run's clock, a missed change)."""
REAP_EVERY_S = 10.0


class RunWatcher:
    """Reads the run list and the selected run's panel; posts what changed."""

    def __init__(self, store: RunStore, post: Callable, list_runs: Callable[[RunStore],
                 list[Run]], monitor=None) -> None:
        from tui.gpu import GpuMonitor

        self.store = store
        """This thread's own connection."""
        self.post = post
        self.list_runs = list_runs
        """The screen's filtered, sorted listing (search, status, sort as it stands)."""
        self.monitor = monitor or GpuMonitor()
        """NVML; tests pass one over a fake NVML module."""
        self.reaped_at = 0.0
        self.list_sig: list | None = None
        self.list_version: int | None = None
        self.listed_at = 0.0
        self.detail_run: int | None = None
        self.detail_sig: tuple | None = None
        self.detail_posted = 0.0
        self.last_event = 0
        self.tails: tuple = ()
        """((run id, started), loss tail, validation tail) of the run being followed."""
        self.events: collections.deque = collections.deque(maxlen=200)
        self.parents: list = []
        """[(engine.runs.lineage.Parent, Run or None)] of the run being followed, read once."""
        self.queue = QueueView()
        """The queue as the last list read found it (places of waiting runs)."""
        self.sweeps: dict = {}
        """Sweep id -> SweepView of the runs last listed."""
        self.watched = 0
        """Findings of the followed run's watch rules (tui.watch_badges)."""

    def watch(self, cancelled: Callable[[], bool], selected: Callable[[], int | None],
              wake: threading.Event, kick: threading.Event, every_s: float) -> None:
        """The poll thread's loop, until `cancelled()`: every `every_s`, or at once when
        the screen sets `wake`, re-read what changed; start what the queue fits when it
        sets `kick`."""
        woken = False
        while not cancelled():
            woken = self.reap() or woken
            if kick.is_set():
                kick.clear()
                self.kick_queue()
            self.poll_list(woken)
            self.poll_detail(selected())  # None: none, or a remote's run
            woken = wake.wait(every_s)
            wake.clear()

    def reap(self) -> bool:
        """Mark runs whose worker process died interrupted now and then; True if any was."""
        if time.monotonic() - self.reaped_at <= REAP_EVERY_S:
            return False
        self.reaped_at = time.monotonic()
        # this connection's own writes leave data_version be: the caller re-lists
        if not self.store.reap_interrupted():
            return False
        self.kick_queue()  # the dead workers' slots are free for what waits
        return True

    def kick_queue(self) -> None:
        """Start the queued runs that fit the free slots now; says which it started."""
        from engine.core.errors import HubtuneError
        from engine.launch.start import start_queued
        from store import StoreError

        try:
            started = start_queued(self.store, monitor=self.monitor)
        except (HubtuneError, StoreError) as exc:  # e.g. a bad HUBTUNE_CPU_SLOTS
            self.post(QueueMoved([], str(exc)))
            return
        if started:
            self.post(QueueMoved(started))

    def poll_list(self, woken: bool) -> None:
        # Re-read when someone else wrote to the store (at most every LIST_EVERY_S while
        # a run logs), when the screen asks (search, sort, a new run), and every 10 s
        # regardless; with 10k runs one read is ~10 ms, which an idle TUI should not
        # spend twice a second.
        version, now = self.store.data_version(), time.monotonic()
        if not (woken or self.list_sig is None or now - self.listed_at > LIST_AT_LEAST_EVERY_S
                or (version != self.list_version and now - self.listed_at >= LIST_EVERY_S)):
            return
        self.list_version, self.listed_at = version, now
        runs = self.list_runs(self.store)
        self.queue = read_queue(self.store, self.monitor)
        self.sweeps = read_sweeps(self.store, runs)
        watched = read_watched(self.store, runs)
        # A running run's Took ticks with each re-read.
        sig = [(r.id, r.status, r.name, r.started_utc, r.finished_utc, r.tags, r.notes,
                best_metric(r), duration(r.duration_s) if r.status == "running" else None)
               for r in runs] + [self.queue, self.sweeps, watched]
        if sig != self.list_sig:
            self.list_sig = sig
            self.post(RunsRefreshed(runs, self.queue, self.sweeps, watched))

    def poll_detail(self, run_id: int | None) -> None:
        from tui.gpu import gpu_line
        from tui.run_result import live_results

        if run_id is None:  # no run here selected (a remote's, tui/remote_runs.py): the
            self.detail_run = None  # panel shows another, so the next one is posted whole
            return
        try:
            run = live_results(self.store, [self.store.get_run(run_id)])[0]
        except Exception:
            return
        self._follow(run)
        fresh = self.store.events(run_id, after_id=self.last_event)
        latest = self.store.latest_metrics(run_id)
        # The run's own GPUs (recorded by its worker), not the machine's first few.
        gpu = gpu_line(self.monitor.read(self.monitor.run_devices(run.env))
                       ) if run.status == "running" else ""
        if fresh:
            self.last_event = fresh[-1].id
            self.events.extend(fresh)
            self.watched = read_watched(self.store, [run]).get(run.id, 0)
            if any(e.message.startswith(ROLLED_BACK) for e in fresh):
                self.tails = ()  # the replay rewrote the curves after its checkpoint
                self._follow(run)
        spot = self.queue.spots.get(run.id) if run.waiting else None
        sweep = self.sweeps.get(run.sweep_id) if run.sweep_id else None
        sig = (run.status, run.error, tuple(sorted(latest.items())), gpu, self.last_event,
               run.tags, run.notes, spot, sweep, self.watched)
        # A running run's clock (duration, ETA) still ticks every 2 s, and its panel
        # redraws at most once a second however fast it logs: the redraws are most of
        # what watching costs the machine.
        since = time.monotonic() - self.detail_posted
        running = run.status == "running"
        changed = sig != self.detail_sig and (
            self.detail_sig is None or not running or since >= DETAIL_EVERY_S)
        if changed or (running and since > 2):
            self.detail_sig, self.detail_posted = sig, time.monotonic()
            _, loss, val = self.tails
            self.post(RunDetailRefreshed(
                run=run, loss=loss.read(self.store, max_points=200),
                val_metric=val.read(self.store, max_points=200),
                latest=latest, gpu=gpu or "no GPU", spot=spot, sweep=sweep,
                parents=self.parents,
                # The whole tail: a newer message may replace this one.
                events=list(self.events), watched=self.watched,
            ))

    def _read_parents(self, run: Run) -> list:
        """The runs `run` was forked from or continues (None where one was deleted)."""
        from engine.runs.lineage import parents
        from store import StoreError

        out = []
        for parent in parents(run.parent_id, run.config):
            try:
                out.append((parent, self.store.get_run(parent.run_id)))
            except StoreError:
                out.append((parent, None))
        return out

    def _follow(self, run: Run) -> None:
        """Start following `run` afresh when it is newly selected or was resumed."""
        if run.id != self.detail_run:
            self.detail_run, self.last_event, self.detail_sig = run.id, 0, None
            self.watched = 0
            self.events.clear()
            self.parents = self._read_parents(run)
        if not self.tails or self.tails[0] != (run.id, run.started_utc):
            # A resume rewrites the points after its checkpoint (and restarts the
            # clock): follow the series afresh.
            self.tails = ((run.id, run.started_utc), SeriesTail(run.id, "loss"),
                          SeriesTail(run.id, f"val_{main_metric(run)}"))
