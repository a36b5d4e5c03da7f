"""The training worker process: `python -m engine.launch.worker RUN_ID DB --lease L`.

It claims its run (queued -> running) with the lease it was started with, trains it with
its events going to the store thread (`engine.launch.sink`), and records the outcome. A
worker that loses its claim, or later finds its run deleted or handed to another worker,
exits without writing to it. Ranks above 0 under torchrun train their shard and write
nothing to the store.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path

from engine.core.config import RunConfig
from engine.core.errors import HubtuneError
from engine.launch.outcome import (
    clear_rank_failures,
    not_ours,
    peer_vanished,
    ranks_verdict,
    record_outcome,
    report_rank_failure,
)
from engine.launch.resume import resume_point
from engine.launch.sink import StoreSink
from store import LeaseLost, RunStore, run_dir


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
    from engine.cluster.rendezvous import distributed_environment, share_start
    from engine.core.environment import capture_environment

    try:
        store.claim(run_id, lease, pid=os.getpid(), host=socket.gethostname(),
                    env={**capture_environment(), **distributed_environment()})
        run = store.get_run(run_id)
    except LeaseLost as exc:
        return not_ours(store, exc)
    resume_from = None
    if resume:
        try:
            point = resume_point(store, run_id, checkpoint, deep=True)
        except HubtuneError as exc:
            return record_outcome(store, run_id, lease, "failed", None, str(exc))
        for note in point.notes():
            store.add_event(run_id, note, "warning", lease=lease)
        resume_from = point.path
        # Rows logged after the checkpoint are replayed by the resumed run.
        store.truncate_after(run_id, int(resume_from.name.split("-")[1]), lease=lease)
        store.drop_predictions_after(run_id, int(resume_from.name.split("-")[1]), lease=lease)
    # The other machines' ranks start from the same checkpoint, or the run fails here.
    problem = share_start(str(resume_from) if resume_from else None)
    if problem:
        return record_outcome(store, run_id, lease, "failed", None, problem)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    several = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if several:
        clear_rank_failures(run_id)
    from engine.share.live import live_report

    report = live_report(run, from_step=int(resume_from.name.split("-")[1]) + 1
                         if resume_from else None)
    sink = StoreSink(db_file, run_id, stop, lease, watch_ranks=several, report=report)
    sink.trial = search_trial(run)
    sink.start()
    status, summary, error = "failed", None, None
    peer_lost = False
    try:
        cfg = RunConfig.from_dict(run.config)
        sink.watch = watcher(cfg)
        sink.rollbacks = rollbacks(cfg, store, run_id)
        join_ranks(cfg)
        from engine.training.loop import train

        outcome = train(cfg, sink, stop, out_dir=run_dir(run_id), resume_from=resume_from,
                        rollbacks=sink.rollbacks)
        status, summary, error = outcome.status, outcome.summary, outcome.error
    except HubtuneError as exc:
        error = str(exc)
    except Exception as exc:  # the log keeps the traceback; the store a sentence
        traceback.print_exc()
        peer_lost = several and peer_vanished(exc)
        error = f"Internal error ({type(exc).__name__}: {exc}); see {run_dir(run_id)}/worker.log."
    finally:
        try:
            sink.close(status)
        except LeaseLost as exc:
            return not_ours(store, exc, sink.trial)
        except Exception:
            traceback.print_exc()
    if several:
        status, summary, error = ranks_verdict(run_id, status, summary, error, peer_lost)
    if sink.trial is not None and sink.trial.pruned_at is not None and status == "stopped":
        status, summary = "pruned", {**(summary or {}), "pruned_at": sink.trial.pruned_at}
    return record_outcome(store, run_id, lease, status, summary, error, trial=sink.trial)


def watcher(cfg: RunConfig):
    """The run's Watcher when it asks for one (`train.watch`); None otherwise."""
    if cfg.train.watch is None:
        return None
    from engine.runs.watch import Watcher

    es = cfg.train.early_stopping
    metric = es.metric if es is not None and es.metric else None
    if metric is not None and not metric.startswith("val_"):
        metric = f"val_{metric}"
    return Watcher(cfg.train.watch, plateau_metric=metric)


def rollbacks(cfg: RunConfig, store: RunStore, run_id: int):
    """The run's Rollbacks when a watch rule may roll it back, counting the rollbacks of
    its earlier sessions (a resumed run's limit is the run's)."""
    from engine.core.events import ROLLED_BACK
    from engine.training.rollback import rollbacks_for

    box = rollbacks_for(cfg)
    if box is not None:
        box.used = sum(e.message.startswith(ROLLED_BACK)
                       for e in store.events(run_id, limit=100_000))
    return box


def search_trial(run):
    """The search trial `run` trains, watched from the store thread; None for any other
    run (or when the search's files cannot be read: the run trains as a plain one)."""
    from engine.launch.start import launch_trial
    from engine.runs.search import TrialWatch, load_spec

    try:
        spec, number = load_spec(run.sweep_id), launch_trial(run.id)
    except HubtuneError as exc:
        print(exc, file=sys.stderr)
        return None
    return TrialWatch(spec, number) if spec is not None and number is not None else None


def join_ranks(cfg: RunConfig) -> None:
    """Several processes: start the process group (claiming this rank across machines)
    and check that every rank runs this same config and code, before anything loads."""
    from engine.cluster.rendezvous import check_same_run, start_process_group

    if start_process_group():
        check_same_run(cfg.to_dict())


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


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m engine.launch.worker")
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
    from engine.cluster.rendezvous import end_process_group

    try:
        return run_worker(args.run_id, db_file, args.lease, resume=args.resume,
                          checkpoint=args.checkpoint)
    finally:  # completed, failed or stopped: each rank leaves the process group
        end_process_group()


def exit_now(code: int) -> None:
    """End a one-process worker without the interpreter's teardown: clearing torch's and
    transformers' modules takes about a second of CPU (0.9 s on the 2-core VM), which on
    a small machine slows the queued run this worker has just started. Everything is
    recorded and closed by now; as at a normal exit, other threads are waited for and
    exit handlers (logging, temporary files, locks) run."""
    from engine.core.compat import run_exit_handlers

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    if not run_exit_handlers():
        sys.exit(code)  # the interpreter's own exit: slower, but nothing is skipped
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:  # ranks leave the way torchrun expects
        exit_now(exit_code)
    sys.exit(exit_code)
