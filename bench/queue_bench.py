"""Case: the run queue's hand-off, from a slot freeing to the next run's first step.

Every slot of the machine is filled with a short blocker run (`train --queue`), then run
B is queued behind them. When a blocker ends, its worker starts B (no scheduler in
between). The figure is the time from that blocker's last event ("Run completed", written
just before its status frees the slot) to B's first recorded step, less B's own model
load (from its "Loading ..." event to its RunPrepared row: data, tokenizer and model).
Everything else counts against the queue: the hand-off, B's process start and imports,
the claim, the accelerator and the first step.

The peer is the same run started into a free slot with `hubtune train CONFIG --detach`,
timed from the command to its first step, less its model load the same way: the ratio
shows what the queue adds to a plain start. Real worker processes, a tiny BERT, its own
HUBTUNE_HOME; repeats interleaved.

Timestamps come from the store: metric rows carry the time they were emitted, events
the time they were committed, which the worker does at once for its notes (a few ms
late). The notes break the figure down: when the new worker process began (from /proc,
Linux), its "Loading" event, its RunPrepared row and its first step.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result

STEPS = 2
TIMEOUT_S = 300.0


def run(repeats: int = 5) -> list[Result]:
    home = Path(tempfile.mkdtemp(prefix="hubtune-bench-queue-"))
    os.environ["HUBTUNE_HOME"] = str(home)
    os.environ.setdefault("HUBTUNE_CPU_SLOTS", "1")
    sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests.support
    import yaml

    from engine.core.config import RunConfig
    from engine.runs.queue import machine_slots
    from store import RunStore
    from tests.support.tiny_models import make_tiny_bert, write_sentiment_csv

    model = make_tiny_bert(home / "tiny-bert")
    data = write_sentiment_csv(home / "sentiment.csv", rows=160)
    cfg = RunConfig.from_dict({
        "name": "queue-bench", "model": {"id": str(model)},
        "head": {"task": "text-classification"},
        "data": {"train": str(data), "validation_split": 0.25, "max_length": 32},
        "train": {"epochs": 1, "max_steps": STEPS, "batch_size": 16, "log_every": 1,
                  "eval_every": 1_000_000, "warmup_ratio": 0.0, "seed": 0},
    })
    config_file = home / "run.yaml"
    config_file.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    store = RunStore()
    slots = len(machine_slots())
    queued: list[dict] = []
    direct: list[dict] = []
    for _ in range(repeats):  # interleaved: a slow drift falls on both sides alike
        queued.append(_queued_once(store, cfg, slots))
        direct.append(_direct_once(store, config_file))
    ours = statistics.median(q["figure"] for q in queued)
    peer = statistics.median(d["figure"] for d in direct)

    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    return [Result(
        "queue hand-off", "s from a freed slot to the next run's first step, less its model load",
        ours, peer, "train --detach into a free slot", "s", "<= 2 s", ours <= 2.0,
        notes=f"{slots} slot(s), tiny BERT, {STEPS} steps, real workers; queued median: "
              f"slot freed -> next worker process started {med(queued, 'to_spawn'):.2f} s, "
              f"-> 'Loading' event {med(queued, 'to_loading'):.2f} s (interpreter, imports, "
              f"claim, accelerator), model load {med(queued, 'load'):.2f} s (subtracted), "
              f"prepared -> first step {med(queued, 'to_step'):.2f} s; direct: command -> "
              f"worker started {med(direct, 'to_spawn'):.2f} s, -> 'Loading' "
              f"{med(direct, 'to_loading'):.2f} s, model load {med(direct, 'load'):.2f} s, "
              f"prepared -> first step {med(direct, 'to_step'):.2f} s",
        extra={"queued": queued, "direct": direct})]


def _queued_once(store, cfg, slots: int) -> dict:
    from engine.launch.start import start_run

    blockers = [start_run(store, cfg, queue=True) for _ in range(slots)]
    nxt = start_run(store, cfg, queue=True)
    if store.get_run(nxt).devices:
        raise SystemExit("the queued run started at once: the blockers did not hold the slots")
    for run_id in blockers:
        _wait_done(store, run_id)
    timeline = _timeline(store, nxt, _wait_done(store, nxt))
    freed = min(_last_event_time(store, b) for b in blockers)
    if timeline["loading"] < freed:
        raise SystemExit(f"run {nxt} started before a slot was freed")
    return _figure(timeline, freed)


def _direct_once(store, config_file: Path) -> dict:
    hubtune = Path(sys.executable).with_name("hubtune")
    started = time.time()
    out = subprocess.run([str(hubtune), "train", str(config_file), "--detach"],
                         capture_output=True, text=True, env=dict(os.environ), check=False)
    if out.returncode != 0:
        raise SystemExit(f"hubtune train --detach failed: {out.stderr.strip()}")
    run_id = int(out.stdout.split()[0])
    return _figure(_timeline(store, run_id, _wait_done(store, run_id)), started)


def _figure(t: dict, origin: float) -> dict:
    """The measured figure and its parts, in seconds after `origin`."""
    load = t["prepared"] - t["loading"]
    spawned = t["spawned"] if t["spawned"] is not None else float("nan")
    return {"figure": t["first_step"] - origin - load, "load": load,
            "to_spawn": spawned - origin, "to_loading": t["loading"] - spawned,
            "to_step": t["first_step"] - t["prepared"]}


def _timeline(store, run_id: int, spawned: float) -> dict:
    """When run `run_id`'s worker process began, the run began loading, was prepared and
    logged its first step (time.time() values, from the store but `spawned`)."""
    db = store.db
    loading = db.execute("SELECT min(time_unix) FROM events WHERE run_id = ? AND message LIKE "
                         "'Loading %'", [run_id]).fetchone()[0]
    prepared = db.execute("SELECT min(time_unix) FROM metrics WHERE run_id = ? AND name = "
                          "'total_steps'", [run_id]).fetchone()[0]
    first_step = db.execute("SELECT min(time_unix) FROM metrics WHERE run_id = ? AND name = "
                            "'loss'", [run_id]).fetchone()[0]
    if None in (loading, prepared, first_step):
        raise SystemExit(f"run {run_id} lacks its 'Loading' event, its total_steps row or a "
                         "loss row: the worker's records changed; update bench/queue_bench.py")
    return {"loading": loading, "prepared": prepared, "first_step": first_step,
            "spawned": spawned}


def _process_start(pid: int) -> float | None:
    """When process `pid` began, as time.time() (Linux /proc; clock ticks, 10 ms)."""
    try:
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    now = time.time()
    return now - uptime + ticks / os.sysconf("SC_CLK_TCK")


def _last_event_time(store, run_id: int) -> float:
    return store.db.execute("SELECT max(time_unix) FROM events WHERE run_id = ?",
                            [run_id]).fetchone()[0]


def _wait_done(store, run_id: int) -> float | None:
    """Wait for run `run_id` to complete; returns when its worker process began."""
    deadline = time.monotonic() + TIMEOUT_S
    spawned = None
    while True:
        run = store.get_run(run_id)
        if run.status not in ("queued", "running"):
            break
        if spawned is None and run.status == "running" and run.pid:
            spawned = _process_start(run.pid)
        if time.monotonic() > deadline:
            raise SystemExit(f"bench run {run_id} did not end within {TIMEOUT_S:.0f} s")
        time.sleep(0.1)
    if run.status != "completed":
        raise SystemExit(f"bench run {run_id} ended {run.status}: {run.error}")
    return spawned
