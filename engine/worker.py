"""The training worker process, and the function that starts one.

This module is the only place the engine touches the store. `start_run`
records a run as queued and spawns `python -m engine.worker RUN_ID` in a new
session with its output in the run folder, so the starting process (CLI or
TUI, perhaps over SSH) can go away without touching training. The worker
turns engine events into batched store writes from a side thread, which
also heartbeats and polls the stop request; the training thread never
waits on SQLite.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from engine.core.config import RunConfig, is_hub_data
from engine.core.errors import HubtuneError
from engine.core.events import (
    STEP_METRIC,
    CheckpointSaved,
    EvalFinished,
    Event,
    FirstStepTaken,
    Note,
    RunPrepared,
    StepLogged,
    ValidationPredicted,
)
from engine.core.gpus import GpuMonitor, check_process_count
from engine.lifecycle import RESUMABLE, check_resumable
from engine.training.precision import precision_label
from store import LeaseLost, RunStore, StoreError, run_dir

FLUSH_INTERVAL_S = 0.5
"""How often buffered metrics are committed: a few times a second at most."""
HEARTBEAT_INTERVAL_S = 2.0
QUEUE_CHECK_INTERVAL_S = 30.0
"""How often a training worker looks for queued runs that a dead worker's slots now fit."""


def start_run(
    store: RunStore,
    cfg: RunConfig,
    *,
    parent_id: int | None = None,
    tags: tuple[str, ...] = (),
    processes: int = 1,
    gpus: GpuMonitor | None = None,
    queue: bool = False,
    sweep_id: str | None = None,
    nodes: dict | None = None,
) -> int:
    """Record a queued run and start its worker; returns the run id at once.

    With `processes` > 1 the worker runs under `torchrun` (data parallel over
    the GPUs, or over CPU processes with gloo); only rank 0 writes to the store.
    More processes than visible GPUs are refused before anything is recorded
    (`gpus` is the NVML reader that counts them; tests pass a fake).
    The run takes its slots (engine.queue) so queued runs wait for it; with `queue`
    it joins the run queue instead and starts when enough slots are free.
    `nodes` (NodeSpec.to_dict() of node 0): the run trains on several machines, whose
    other nodes run `engine.nodes` without a store (see there).
    """
    import yaml

    from engine.queue import check_fits, slots_wanted, take_slots

    if processes < 1:
        raise HubtuneError(f"--processes must be 1 or more, got {processes}.")
    gpus = gpus or GpuMonitor()
    wanted = slots_wanted(processes, gpus)
    if queue:
        check_fits(wanted, gpus)
    else:
        check_process_count(processes, gpus)
    if parent_id is None and cfg.model.id.startswith("run:") and cfg.model.id[4:].isdigit():
        parent_id = int(cfg.model.id[4:])  # sequential fine-tuning: lineage kept
        try:
            store.get_run(parent_id)
        except StoreError:
            raise HubtuneError(f"model.id {cfg.model.id} names no recorded run; "
                               "`hubtune runs ls` lists them.") from None
    run_id = store.create_run(
        cfg.to_dict(),
        name=cfg.name or None,
        model_id=cfg.model.id,
        task=cfg.head.task,
        dataset=cfg.data.train if is_hub_data(cfg.data.train) else Path(cfg.data.train).name,
        parent_id=parent_id,
        tags=tags,
        queue_slots=wanted if queue else None,
        sweep_id=sweep_id,
    )
    lease = store.get_run(run_id).lease
    try:  # from here on a failure must not leave the run `queued` for ever
        folder = run_dir(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        # the cwd too: a queued run is launched later, perhaps by another run's worker
        (folder / LAUNCH_FILE).write_text(json.dumps({
            "processes": processes, "cwd": os.getcwd(), **({"nodes": nodes} if nodes else {})}))
        if queue:
            start_queued(store, monitor=gpus)
            return run_id
        devices = take_slots(store, run_id, wanted, monitor=gpus)
        _spawn(store, run_id, lease, resume=False, devices=devices,
               keep_cuda=os.environ.get("CUDA_VISIBLE_DEVICES") is not None)
    except BaseException as exc:
        _launch_failed(store, run_id, lease, exc)
        raise
    return run_id


def _launch_failed(store: RunStore, run_id: int, lease: str, exc: BaseException) -> None:
    """A launch that failed after the run was recorded (or requeued for a resume): the
    run ends `failed` with the reason instead of waiting `queued` for a worker that never
    comes (a failed run keeps its checkpoints and can be resumed), and the slots it held
    go to the queue. Whatever happens here, the caller re-raises the original error."""
    try:
        if store.fail_launch(run_id, lease, launch_failure(exc)):
            start_queued(store)
    except Exception:  # the store itself may be what failed: the original error,
        pass  # re-raised by the caller, is the one sentence the user gets


def launch_failure(exc: BaseException) -> str:
    """A failed launch's reason as one sentence for the run's record."""
    if isinstance(exc, (HubtuneError, StoreError)):
        return str(exc)
    if isinstance(exc, KeyboardInterrupt):
        return "The start was interrupted before the run's worker process began."
    if isinstance(exc, OSError):
        return (f"The run's worker process could not be started ({exc.strerror or exc}); "
                "resume the run once that is fixed.")
    return f"Internal error while starting the run ({type(exc).__name__}: {exc})."


def start_queued(store: RunStore, *, monitor: GpuMonitor | None = None,
                 releasing: tuple[str, ...] = ()) -> list[int]:
    """Start the queued runs that fit the free slots now; returns their ids.

    No babysitter: called by `train --queue`, by the queue commands, by a worker whose
    run ends (`releasing` its slots) and whenever dead workers are reaped. Safe to call
    from any number of processes at once (engine.queue.assign_waiting).
    """
    from engine.queue import assign_waiting

    if not store.has_waiting():
        return []
    store.reap_interrupted()  # a killed worker's slots come back
    started: list[int] = []
    while True:
        freed = False
        for a in assign_waiting(store, monitor=monitor, releasing=releasing):
            try:
                _spawn(store, a.run_id, a.lease or "", resume=False, devices=a.devices)
                started.append(a.run_id)
            except Exception as exc:  # deleted meanwhile, its folder unwritable, no fork
                store.fail_launch(a.run_id, a.lease or "", launch_failure(exc))
                freed = True
        # A run that could not start (or was deleted after it was given its slots) gave
        # them back: the next in line gets them now, not at the next run's end. Each
        # round ends at least one waiting run, so this stops.
        if not freed:
            return started


def queue_sweep(store: RunStore, configs: list[RunConfig], *, processes: int = 1,
                gpus: GpuMonitor | None = None) -> tuple[str, list[int]]:
    """Queue one run per config, all sharing a new sweep id; returns (sweep id, run ids)."""
    from engine.sweep import new_sweep_id

    sweep_id = new_sweep_id()
    ids = [start_run(store, cfg, processes=processes, gpus=gpus, queue=True,
                     sweep_id=sweep_id) for cfg in configs]
    return sweep_id, ids


LAUNCH_FILE = "launch.json"
"""How the run's worker is launched (its process count), so a resume launches it the same way."""


def worker_command(run_id: int, db_file: Path, lease: str, *, resume: bool,
                   checkpoint: str | None = None, folder: Path | None = None) -> list[str]:
    """The worker's command line: plain Python, or torchrun for several processes
    (`folder`: the run's, where its launch file is; by default this home's)."""
    processes = launch_processes(run_id, folder)
    worker = ["-m", "engine.worker", str(run_id), str(db_file), "--lease", lease,
              *(["--resume"] if resume else []),
              *(["--checkpoint", checkpoint] if checkpoint else [])]
    if processes == 1 and launch_nodes(run_id, folder) is None:
        return [sys.executable, *worker]
    # engine.nodes runs torchrun and stays its parent: it reads torchrun's verdict on a rank
    # killed by a signal (the kernel's OOM killer), which no rank lives to record.
    return [sys.executable, "-m", "engine.nodes", "launch", *worker[2:]]


def launch_nodes(run_id: int, folder: Path | None = None) -> dict | None:
    """How run `run_id` meets its other machines (engine.core.rendezvous.NodeSpec as a
    dict), or None for a run on one machine."""
    launch = (folder or run_dir(run_id)) / LAUNCH_FILE
    return json.loads(launch.read_text()).get("nodes") if launch.is_file() else None


def launch_processes(run_id: int, folder: Path | None = None) -> int:
    """The process count run `run_id` was launched with (1 for a run from before)."""
    launch = (folder or run_dir(run_id)) / LAUNCH_FILE
    return json.loads(launch.read_text())["processes"] if launch.is_file() else 1


def _launch_cwd(folder: Path) -> str:
    """The folder the run was recorded from (its worker starts there), if it still is."""
    launch = folder / LAUNCH_FILE
    try:
        cwd = json.loads(launch.read_text()).get("cwd")
    except (OSError, ValueError):
        cwd = None
    return cwd if isinstance(cwd, str) and os.path.isdir(cwd) else os.getcwd()


popen = subprocess.Popen
"""How the worker's process is started. The test suite forks workers from a process that
has imported torch once (tests/support/warm_worker.py) instead of paying for it per run."""


TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK",
                      "GROUP_WORLD_SIZE", "ROLE_RANK", "ROLE_NAME", "ROLE_WORLD_SIZE",
                      "MASTER_ADDR", "MASTER_PORT")
"""Set in a rank's environment by torchrun: a run launched by a rank's worker (the queue
moving on) must not inherit them, or it takes itself for a rank of that run."""


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a resume starts from, and the newer ones passed over."""

    path: Path
    skipped: tuple[tuple[str, str], ...] = ()
    """(checkpoint name, what is wrong with it) for each newer one found damaged."""

    def notes(self) -> list[str]:
        return [f"Checkpoint {name} is damaged ({problem}); resuming from {self.path.name} "
                "instead." for name, problem in self.skipped]


def resume_point(store: RunStore, run_id: int, wanted: str | None = None, *,
                 deep: bool = False) -> ResumePoint:
    """The checkpoint to resume from: `wanted` (`step-N`) if given and intact, else
    the newest intact one the store records.

    The store's record is written after the metrics up to that step, so resuming
    from it never leaves a gap in the series, even when the worker died between
    writing a checkpoint and flushing its last metrics. A damaged checkpoint
    (truncated weights, a foreign file, unexpected keys) is passed over for the
    next older one; `deep` also opens the torch files (the worker does).
    """
    from engine.training.checkpoint import checkpoint_problem

    recorded = [Path(c.path) for c in store.checkpoints(run_id)]
    names = ", ".join(p.name for p in recorded) or "none"
    if wanted is not None:
        chosen = [p for p in recorded if p.name == wanted]
        if not chosen:
            raise HubtuneError(f"Run {run_id} has no checkpoint {wanted}; its checkpoints: "
                               f"{names}.")
        problem = checkpoint_problem(chosen[0], deep=deep)
        if problem:
            raise HubtuneError(f"Checkpoint {wanted} of run {run_id} is damaged ({problem}); "
                               f"pick another of: {names}.")
        return ResumePoint(chosen[0])
    skipped: list[tuple[str, str]] = []
    for path in reversed(recorded):
        problem = checkpoint_problem(path, deep=deep)
        if problem is None:
            return ResumePoint(path, tuple(skipped))
        skipped.append((path.name, problem))
    if skipped:
        found = "; ".join(f"{name}: {problem}" for name, problem in skipped)
        raise HubtuneError(f"Run {run_id} has no intact checkpoint to resume from ({found}); "
                           f"fork it (hubtune runs fork {run_id}) to start again.")
    raise HubtuneError(f"Run {run_id} has no checkpoint to resume from; fork it "
                       f"(hubtune runs fork {run_id}) to start again.")


def resume_run(store: RunStore, run_id: int, checkpoint: str | None = None) -> ResumePoint:
    """Restart a stopped, interrupted or failed run from its newest intact checkpoint
    (or `checkpoint`, a `step-N` name).

    The run is requeued with a new lease in one conditional update, so of two
    resumes racing (or a resume racing `rm`) exactly one starts a worker.
    """
    store.reap_interrupted()
    check_resumable(store.get_run(run_id))
    home = store.recorded_home(run_id)
    processes = launch_processes(run_id, home / "runs" / str(run_id) if home else None)
    check_process_count(processes, run_id=run_id)
    point = resume_point(store, run_id, checkpoint)
    try:
        lease = store.requeue(run_id, allowed=tuple(RESUMABLE))
    except StoreError as exc:  # another command got to the run first
        raise HubtuneError(str(exc)) from None
    from engine.queue import slots_wanted, take_slots

    try:  # a resume that cannot launch leaves the run failed, and so resumable again
        devices = take_slots(store, run_id, slots_wanted(processes))
        # Only a checkpoint the user named is passed on: otherwise the worker chooses
        # again with the deep check, and may pass over one whose torch files are damaged.
        _spawn(store, run_id, lease, resume=True, checkpoint=checkpoint, devices=devices,
               keep_cuda=os.environ.get("CUDA_VISIBLE_DEVICES") is not None)
    except BaseException as exc:
        _launch_failed(store, run_id, lease, exc)
        raise
    return point


def worker_environment(base, devices: tuple[str, ...] = (), *, keep_cuda: bool = False) -> dict:
    """A worker's environment: `base` without a launching rank's torchrun variables, with
    the GPUs the run holds, or (`keep_cuda`) the CUDA_VISIBLE_DEVICES the user set, read
    in PCI bus order as nvidia-smi numbers the GPUs (CUDA's own order puts the fastest
    first, so "1" could name another card)."""
    from engine.queue import cuda_environment

    env = {k: v for k, v in base.items()
           if k not in TORCHRUN_VARIABLES and not k.startswith("TORCHELASTIC_")}
    if not keep_cuda:  # the GPUs the run holds, not those of whoever launches it
        env.update(cuda_environment(devices))
    elif env.get("CUDA_VISIBLE_DEVICES"):
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    return env


def _spawn(store: RunStore, run_id: int, lease: str, *, resume: bool,
           checkpoint: str | None = None, devices: tuple[str, ...] = (),
           keep_cuda: bool = False) -> None:
    # Absolute: the worker starts in the run's launch folder, where a relative
    # HUBTUNE_HOME would name another (new, empty) database.
    home = (store.recorded_home(run_id) or store.path.parent).absolute()
    folder = home / "runs" / str(run_id)
    env = worker_environment(os.environ, devices, keep_cuda=keep_cuda)
    # The worker opens the same database, and finds the run's files under the home they
    # were recorded in: another home may share this database through a symlink.
    env["HUBTUNE_HOME"] = str(home)
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        log = open(folder / "worker.log", "ab")
    except FileNotFoundError:
        raise HubtuneError(f"Run {run_id} was deleted while it was being started.") from None
    except OSError as exc:
        raise HubtuneError(f"Cannot write the worker log in {folder} ({exc.strerror}); "
                           "check that HUBTUNE_HOME is a writable folder.") from None
    with log:
        proc = popen(
            worker_command(run_id, store.path.absolute(), lease, resume=resume,
                           checkpoint=checkpoint, folder=folder),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a dropped SSH session's SIGHUP never reaches it
            env=env,
            cwd=_launch_cwd(folder),
        )
    store.set_pid(run_id, proc.pid, lease)  # False if the worker already claimed the run


class StoreSink:
    """Buffers events from the training thread; a side thread writes them."""

    def __init__(self, db_file: Path, run_id: int, stop: threading.Event, lease: str, *,
                 watch_ranks: bool = False) -> None:
        self.db_file = db_file
        self.watch_ranks = watch_ranks
        """Several processes: look for another rank's failure at each heartbeat."""
        self.rank_failed_at: float | None = None
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
        self._thread.start()

    def __call__(self, event: Event) -> None:
        now = time.time()
        with self._lock:
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
            self._queued += 1
            ticket = self._queued
        if isinstance(event, (Note, RunPrepared)):
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
                    _start_next(store)  # a killed worker's slots, reaped, go to the queue
                    last_queue_check = time.monotonic()
                if closing:
                    return
        except BaseException as exc:  # surfaced by close(); the loop must not die silently
            self.error = exc
            self.stop.set()  # a worker that cannot record (or lost its run) stops training
            with self._committed_cv:
                self._committed_cv.notify_all()
        finally:
            store.close()

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
        _record_outcome(store, self.run_id, self.lease, "failed", failure[1], failure[0])
        os._exit(1)

    def _flush(self, store: RunStore) -> None:
        with self._lock:
            metrics, self._metrics = self._metrics, []
            notes, self._notes = self._notes, []
            checkpoints, self._checkpoints = self._checkpoints, []
            predictions, self._predictions = self._predictions, None
            ticket = self._queued
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

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        self._thread.join()
        if self.error is not None:
            raise self.error


def run_worker(run_id: int, db_file: Path, lease: str, *, resume: bool = False,
               checkpoint: str | None = None) -> int:
    """Train run `run_id` to the end, recording everything; returns an exit code.

    The worker first claims the run with `lease` (queued -> running, atomically);
    a worker that loses the claim, or later finds its run deleted or handed to
    another worker, exits without writing to it.
    """
    if int(os.environ.get("RANK", "0")) != 0:
        return _run_follower(run_id, db_file, resume=resume, checkpoint=checkpoint)
    store = RunStore(db_file)
    from engine.core.environment import capture_environment
    from engine.core.rendezvous import distributed_environment, share_start

    try:
        store.claim(run_id, lease, pid=os.getpid(), host=socket.gethostname(),
                    env={**capture_environment(), **distributed_environment()})
        run = store.get_run(run_id)
    except LeaseLost as exc:
        return _not_ours(store, exc)
    resume_from = None
    if resume:
        try:
            point = resume_point(store, run_id, checkpoint, deep=True)
        except HubtuneError as exc:
            return _record_outcome(store, run_id, lease, "failed", None, str(exc))
        for note in point.notes():
            store.add_event(run_id, note, "warning", lease=lease)
        resume_from = point.path
        # Rows logged after the checkpoint are replayed by the resumed run.
        store.truncate_after(run_id, int(resume_from.name.split("-")[1]), lease=lease)
        store.drop_predictions_after(run_id, int(resume_from.name.split("-")[1]), lease=lease)
    # The other machines' ranks start from the same checkpoint, or the run fails here.
    problem = share_start(str(resume_from) if resume_from else None)
    if problem:
        return _record_outcome(store, run_id, lease, "failed", None, problem)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if several:
        _clear_rank_failures(run_id)
    sink = StoreSink(db_file, run_id, stop, lease, watch_ranks=several)
    sink.start()
    status, summary, error = "failed", None, None
    peer_lost = False
    try:
        cfg = RunConfig.from_dict(run.config)
        join_ranks(cfg)
        from engine.training.loop import train

        outcome = train(cfg, sink, stop, out_dir=run_dir(run_id), resume_from=resume_from)
        status, summary, error = outcome.status, outcome.summary, outcome.error
    except HubtuneError as exc:
        error = str(exc)
    except Exception as exc:  # the log keeps the traceback; the store a sentence
        traceback.print_exc()
        peer_lost = several and _peer_lost(exc)
        error = f"Internal error ({type(exc).__name__}: {exc}); see {run_dir(run_id)}/worker.log."
    finally:
        try:
            sink.close()
        except LeaseLost as exc:
            return _not_ours(store, exc)
        except Exception:
            traceback.print_exc()
    if several:
        status, summary, error = _ranks_verdict(run_id, status, summary, error, peer_lost)
    return _record_outcome(store, run_id, lease, status, summary, error)


def _ranks_verdict(run_id: int, status: str, summary: dict | None, error: str | None,
                   peer_lost: bool) -> tuple[str, dict | None, str | None]:
    """The outcome of a run of several ranks, as rank 0 records it.

    Rank 0's own reason stands (every rank agrees on divergence); another rank's
    replaces what rank 0 saw of it: a stop, or a collective broken by the dead peer.
    """
    own_reason = status == "failed" and error and not error.startswith("Internal error")
    failed_rank = None
    if not own_reason:
        # Another machine's rank reports through node 0's key-value store, or its node
        # once torchrun there has said how it died: give that a moment to arrive.
        from engine.core.rendezvous import node_count

        failed_rank = rank_failure(run_id, wait_s=PEER_REPORT_WAIT_S if peer_lost
                                   and node_count() > 1 else 0)
    if failed_rank is not None and status != "completed":
        error, summary = failed_rank[0], {**(summary or {}), **failed_rank[1]}
        status = "failed"
    elif peer_lost:
        error = (f"Another rank's process ended without a word during training (killed by "
                 f"a signal, such as the kernel's out-of-memory killer's SIGKILL, or crashed); "
                 f"see {run_dir(run_id)}/worker.log.")
    return status, summary, error


def join_ranks(cfg: RunConfig) -> None:
    """Several processes: start the process group (claiming this rank across machines)
    and check that every rank runs this same config and code, before anything loads."""
    from engine.core.rendezvous import check_same_run, start_process_group

    if start_process_group():
        check_same_run(cfg.to_dict())


PEER_REPORT_WAIT_S = 15.0
"""How long rank 0 waits, once a peer has vanished, for the reason to reach it from that
peer's machine (its node reads torchrun's verdict first): less than the 30 s torchrun
gives a rank between its SIGTERM and SIGKILL."""


def _peer_lost(exc: BaseException) -> bool:
    """A collective that failed because another rank's process went away."""
    text = f"{type(exc).__name__}: {exc}"
    return any(sign in text for sign in ("DistBackendError", "gloo", "NCCL", "Connection closed",
                                         "Connection reset", "Broken pipe"))


EXIT_NOT_OURS = 3
"""The worker's exit code when its run was deleted or handed to another worker."""


def _record_outcome(store: RunStore, run_id: int, lease: str, status: str,
                    summary: dict | None, error: str | None) -> int:
    """The run's last events and final status (while the lease still holds); closes the
    store and returns the worker's exit code."""
    try:
        if error:
            store.add_event(run_id, error, "error", lease=lease)
        ending = f"Run {status}"
        if status == "stopped" and summary and summary.get("steps") is not None:
            ending += (f" at step {summary['steps']}; R in the TUI or "
                       f"`hubtune runs resume {run_id}` continues it from there")
        store.add_event(run_id, ending, "info", lease=lease)
        store.finish(run_id, status, summary=summary, error=error, lease=lease)
    except LeaseLost as exc:
        return _not_ours(store, exc)
    _start_next(store, run_id)
    store.close()
    return 0 if status in ("completed", "stopped") else 1


def _start_next(store: RunStore, run_id: int | None = None) -> None:
    """No babysitter: a worker that frees slots (its run ended, or it reaped a dead
    worker's) starts the queued runs that now fit. Never fails the worker."""
    try:
        releasing = store.get_run(run_id).devices if run_id is not None else ()
        start_queued(store, releasing=releasing)
    except Exception:
        traceback.print_exc()


def _not_ours(store: RunStore, exc: LeaseLost) -> int:
    """The run was deleted or handed to another worker: say so in the log, write nothing
    to it. A run deleted after it was given its slots no longer holds them, and its
    worker may be the only process left to notice: the queue moves on from here."""
    print(exc, file=sys.stderr)
    _start_next(store)
    store.close()
    return EXIT_NOT_OURS


def _run_follower(run_id: int, db_file: Path, *, resume: bool,
                  checkpoint: str | None) -> int:
    """A rank above 0 under torchrun: trains its shard, reads the store, writes nothing."""
    store = RunStore(db_file)
    try:
        cfg = RunConfig.from_dict(store.get_run(run_id).config)
        # the same choice as rank 0 makes, so every rank starts from one checkpoint
        resume_from = resume_point(store, run_id, checkpoint, deep=True).path if resume else None
    finally:
        store.close()
    stop = threading.Event()  # rank 0 reads the stop request and shares it
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from engine.training.loop import train

    rank = int(os.environ["RANK"])
    try:
        join_ranks(cfg)
        outcome = train(cfg, lambda event: None, stop, out_dir=run_dir(run_id),
                        resume_from=resume_from)
    except HubtuneError as exc:
        report_rank_failure(run_id, rank, str(exc))
        return 1
    except Exception as exc:
        traceback.print_exc()
        report_rank_failure(run_id, rank, f"Internal error ({type(exc).__name__}: {exc}); see "
                                          f"{run_dir(run_id)}/worker.log.")
        return 1
    if outcome.status == "failed":
        report_rank_failure(run_id, rank, outcome.error or "failed", outcome.summary)
        return 1
    return 0


RANK_FAILURE = "rank-{rank}.failed.json"
"""Written into the run folder by a rank above 0 that fails, for rank 0 to record."""
RANK_FAILURE_GRACE_S = 10.0
"""How long rank 0 lets its training thread end on its own once another rank has failed,
before its store thread records the failure and ends the process (a collective on a GPU
can wait for its dead peer far longer than torchrun waits before killing rank 0)."""


def report_rank_failure(run_id: int, rank: int, error: str, summary: dict | None = None) -> None:
    """Leave a failed rank's reason where rank 0 finds it (only rank 0 writes the store:
    without this the run would end `interrupted`, or as rank 0's broken collective)."""
    path = run_dir(run_id) / RANK_FAILURE.format(rank=rank)
    try:
        path.write_text(json.dumps({"rank": rank, "error": error, "summary": summary or {}}),
                        encoding="utf-8")
    except OSError as exc:
        print(f"Cannot record the failure of rank {rank} in {path}: {exc}", file=sys.stderr)


def rank_failure(run_id: int, wait_s: float = 0) -> tuple[str, dict] | None:
    """(the sentence, the summary) of the first rank above 0 that failed in this session:
    on this machine from its file in the run folder, on another from node 0's key-value
    store (engine.core.rendezvous.post_failure). Waits up to `wait_s` for one."""
    from engine.core.rendezvous import posted_failure

    deadline = time.monotonic() + wait_s
    while True:
        for path in sorted(run_dir(run_id).glob(RANK_FAILURE.format(rank="*"))):
            try:
                found = json.loads(path.read_text(encoding="utf-8"))
                return f"Rank {found['rank']} failed: {found['error']}", dict(found["summary"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        posted = posted_failure()
        if posted is not None:
            return (f"Rank {posted['rank']} failed: {posted['error']}",
                    dict(posted.get("summary") or {}))
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.5)


def _clear_rank_failures(run_id: int) -> None:
    for path in run_dir(run_id).glob(RANK_FAILURE.format(rank="*")):
        path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m engine.worker")
    parser.add_argument("run_id", type=int)
    parser.add_argument("db_file", type=Path, nargs="?")
    parser.add_argument("--lease", required=True, help="the run's lease (RunStore.claim)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--checkpoint", help="resume from this step-N checkpoint")
    args = parser.parse_args(argv)
    db_file = args.db_file
    if db_file is None:
        from store import db_path

        db_file = db_path()
    from engine.core.rendezvous import end_process_group

    try:
        return run_worker(args.run_id, db_file, args.lease, resume=args.resume,
                          checkpoint=args.checkpoint)
    finally:  # completed, failed or stopped: each rank leaves the process group
        end_process_group()


def _exit_now(code: int) -> None:
    """End a one-process worker without the interpreter's teardown: clearing torch's and
    transformers' modules takes about a second of CPU (0.9 s on the 2-core VM), which on
    a small machine slows the queued run this worker has just started. Everything is
    recorded and closed by now; as at a normal exit, other threads are waited for and
    exit handlers (logging, temporary files, locks) run."""
    import atexit

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # ranks leave the way torchrun expects
        _exit_now(exit_code)
    sys.exit(exit_code)
