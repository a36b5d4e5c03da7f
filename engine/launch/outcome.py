"""How a run's end is recorded: its final status and last events, a failed rank's reason
carried to rank 0, and the queue moving on to the runs the freed slots now fit.
"""

from __future__ import annotations

import json
import sys
import time
import traceback

from engine.launch import start
from store import LeaseLost, RunStore, run_dir

EXIT_NOT_OURS = 3
"""The worker's exit code when its run was deleted or handed to another worker."""


def record_outcome(store: RunStore, run_id: int, lease: str, status: str,
                   summary: dict | None, error: str | None, trial=None) -> int:
    """The run's last events and final status (while the lease still holds); closes the
    store and returns the worker's exit code."""
    try:
        if error:
            store.add_event(run_id, error, "error", lease=lease)
        ending = f"Run {status}"
        if status == "stopped" and summary and summary.get("steps") is not None:
            ending += (f" at step {summary['steps']}; R in the TUI or "
                       f"`hubtune runs resume {run_id}` continues it from there")
        if status == "pruned" and summary:
            ending += (f" at step {summary.get('pruned_at')}: the search's pruner found its "
                       "evaluation behind the other trials' at that step; its checkpoints "
                       "and metrics are kept")
        store.add_event(run_id, ending, "info", lease=lease)
        store.finish(run_id, status, summary=summary, error=error, lease=lease)
    except LeaseLost as exc:  # deleted meanwhile: a search trial is settled all the same
        return not_ours(store, exc, trial)
    end_trial(store, run_id)
    start_next(store, run_id)
    store.close()
    return 0 if status in ("completed", "stopped", "pruned") else 1


def end_trial(store: RunStore, run_id: int) -> None:
    """A search trial's run has ended: its result goes to the study, and the next trial
    is queued in its place (engine.runs.search). Never fails the worker."""
    from engine.launch.start import launch_trial, queue_trials
    from engine.runs.search import load_spec, tell
    from store.records import kept_metrics

    try:
        run = store.get_run(run_id)
        spec, number = load_spec(run.sweep_id), launch_trial(run_id)
        if spec is None or number is None:
            return
        value = kept_metrics(run.summary)[1].get(spec.metric) if run.summary else None
        tell(spec, number, run.status, value)
        queue_trials(store, spec)
    except Exception:
        traceback.print_exc()


def start_next(store: RunStore, run_id: int | None = None) -> None:
    """No babysitter: a worker that frees slots (its run ended, or it reaped a dead
    worker's) starts the queued runs that now fit. Never fails the worker."""
    try:
        releasing = store.get_run(run_id).devices if run_id is not None else ()
        start.start_queued(store, releasing=releasing)
    except Exception:
        traceback.print_exc()


def not_ours(store: RunStore, exc: LeaseLost, trial=None) -> int:
    """The run was deleted or handed to another worker: say so in the log, write nothing
    to it. A run deleted after it was given its slots no longer holds them, and its
    worker may be the only process left to notice: the queue moves on from here, and a
    search `trial` (its TrialWatch) is settled and replaced."""
    print(exc, file=sys.stderr)
    if trial is not None:
        try:
            start.queue_trials(store, trial.spec)
        except Exception:
            traceback.print_exc()
    start_next(store)
    store.close()
    return EXIT_NOT_OURS


def ranks_verdict(run_id: int, status: str, summary: dict | None, error: str | None,
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
        from engine.cluster.rendezvous import node_count

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


PEER_REPORT_WAIT_S = 15.0
"""How long rank 0 waits, once a peer has vanished, for the reason to reach it from that
peer's machine (its node reads torchrun's verdict first): less than the 30 s torchrun
gives a rank between its SIGTERM and SIGKILL."""


def peer_vanished(exc: BaseException) -> bool:
    """A collective that failed because another rank's process went away."""
    text = f"{type(exc).__name__}: {exc}"
    return any(sign in text for sign in ("DistBackendError", "gloo", "NCCL", "Connection closed",
                                         "Connection reset", "Broken pipe"))


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
    store (engine.cluster.rendezvous.post_failure). Waits up to `wait_s` for one."""
    from engine.cluster.rendezvous import posted_failure

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


def clear_rank_failures(run_id: int) -> None:
    for path in run_dir(run_id).glob(RANK_FAILURE.format(rank="*")):
        path.unlink(missing_ok=True)
