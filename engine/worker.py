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

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from engine.config import RunConfig
from engine.errors import HubtuneError
from engine.events import CheckpointSaved, EvalFinished, Event, Note, RunPrepared, StepLogged
from store import RunStore, run_dir

FLUSH_INTERVAL_S = 0.5
"""How often buffered metrics are committed: a few times a second at most."""
HEARTBEAT_INTERVAL_S = 2.0


def start_run(
    store: RunStore,
    cfg: RunConfig,
    *,
    parent_id: int | None = None,
    tags: tuple[str, ...] = (),
) -> int:
    """Record a queued run and start its worker; returns the run id at once."""
    import yaml

    run_id = store.create_run(
        cfg.to_dict(),
        name=cfg.name or None,
        model_id=cfg.model.id,
        task=cfg.head.task,
        dataset=Path(cfg.data.train).name,
        parent_id=parent_id,
        tags=tags,
    )
    folder = run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    env = dict(os.environ)
    env["HUBTUNE_HOME"] = str(store.path.parent)  # the worker must open the same database
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    with open(folder / "worker.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.worker", str(run_id), str(store.path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a dropped SSH session's SIGHUP never reaches it
            env=env,
            cwd=os.getcwd(),
        )
    store.db.execute("UPDATE runs SET pid = ? WHERE id = ?", [proc.pid, run_id])
    store.db.conn.commit()
    return run_id


class StoreSink:
    """Buffers events from the training thread; a side thread writes them."""

    def __init__(self, db_file: Path, run_id: int, stop: threading.Event) -> None:
        self.db_file = db_file
        self.run_id = run_id
        self.stop = stop
        self._lock = threading.Lock()
        self._metrics: list[tuple] = []
        self._notes: list[tuple[str, str]] = []
        self._closing = threading.Event()
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
            elif isinstance(event, Note):
                self._notes.append((event.level, event.message))
            elif isinstance(event, RunPrepared):
                self._notes.append((
                    "info",
                    f"Training {event.trainable_params:,} of {event.total_params:,} parameters "
                    f"for {event.total_steps} steps on {event.device} "
                    f"({'fp32' if event.precision == 'no' else event.precision})",
                ))
                self._metrics.append((0, 0.0, "total_steps", float(event.total_steps), now))
            elif isinstance(event, CheckpointSaved):
                self._notes.append(("info", f"Checkpoint at step {event.step}: {event.path}"))

    def _loop(self) -> None:
        store = RunStore(self.db_file)  # this thread's own connection
        last_beat = 0.0
        try:
            while True:
                closing = self._closing.wait(FLUSH_INTERVAL_S)
                self._flush(store)
                if time.monotonic() - last_beat >= HEARTBEAT_INTERVAL_S:
                    store.heartbeat(self.run_id)
                    if store.stop_requested(self.run_id):
                        self.stop.set()
                    last_beat = time.monotonic()
                if closing:
                    return
        except BaseException as exc:  # surfaced by close(); the loop must not die silently
            self.error = exc
        finally:
            store.close()

    def _flush(self, store: RunStore) -> None:
        with self._lock:
            metrics, self._metrics = self._metrics, []
            notes, self._notes = self._notes, []
        if metrics:
            store.log_metrics(self.run_id, metrics)
        for level, message in notes:
            store.add_event(self.run_id, message, level)

    def close(self) -> None:
        self._closing.set()
        self._thread.join()
        if self.error is not None:
            raise self.error


def run_worker(run_id: int, db_file: Path) -> int:
    """Train run `run_id` to the end, recording everything; returns an exit code."""
    store = RunStore(db_file)
    run = store.get_run(run_id)
    from engine.environment import capture_environment

    store.mark_started(run_id, pid=os.getpid(), host=socket.gethostname(),
                       env=capture_environment())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sink = StoreSink(db_file, run_id, stop)
    sink.start()
    status, summary, error = "failed", None, None
    try:
        cfg = RunConfig.from_dict(run.config)
        from engine.train import train

        outcome = train(cfg, sink, stop, out_dir=run_dir(run_id))
        status, summary, error = outcome.status, outcome.summary, outcome.error
    except HubtuneError as exc:
        error = str(exc)
    except Exception as exc:  # the log keeps the traceback; the store a sentence
        traceback.print_exc()
        error = f"Internal error ({type(exc).__name__}: {exc}); see {run_dir(run_id)}/worker.log."
    finally:
        try:
            sink.close()
        except Exception:
            traceback.print_exc()
    if error:
        store.add_event(run_id, error, "error")
    store.add_event(run_id, f"Run {status}", "info")
    store.finish(run_id, status, summary=summary, error=error)
    store.close()
    return 0 if status in ("completed", "stopped") else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    run_id = int(args[0])
    db_file = Path(args[1]) if len(args) > 1 else None
    if db_file is None:
        from store import db_path

        db_file = db_path()
    return run_worker(run_id, db_file)


if __name__ == "__main__":
    sys.exit(main())
