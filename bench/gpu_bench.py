"""CUDA cases: 1 and 2 on bert-base- and distilbert-sized models built from configs (bf16),
and 7: useful-token TFLOP/s against a bf16 matmul ceiling, and peak memory beside the plan.

Without a CUDA device every case is one row saying it was skipped. The models
are random-initialised from configs (no download): speed does not depend on
the weights, and the accuracy columns are left out for them.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from bench.common import Result, interleaved
from bench.throughput_bench import MAX_LENGTH, TUTORIAL_STEPS, Sides
from bench.tweets import minilm_path

GPU_BATCH = 64
TIMED_STEPS = 40
SIZES = {
    # name: (transformers config class, keyword arguments)
    "bert-base": ("BertConfig", {"hidden_size": 768, "num_hidden_layers": 12,
                                 "num_attention_heads": 12, "intermediate_size": 3072}),
    "distilbert": ("DistilBertConfig", {"dim": 768, "n_layers": 6, "n_heads": 12,
                                        "hidden_dim": 3072}),
}
MATMUL_N = 8192


def run(repeats: int = 5, sizes: list[str] | None = None) -> list[Result]:
    """Every case for each model size in `sizes` (default all of SIZES)."""
    if not torch.cuda.is_available():
        return [Result(case, "skipped: no CUDA device", None, notes="runs when a GPU is present")
                for case in ("1 fine-tune (CUDA)", "2 fine-tune (CUDA)", "7 GPU efficiency")]
    from engine.modeling.loading import quiet_transformers

    quiet_transformers()
    tmp = Path(tempfile.mkdtemp(prefix="hubtune-bench-gpu-"))
    ceiling = matmul_tflops()
    device = torch.cuda.get_device_name(0)
    results = []
    for name in sizes or list(SIZES):
        folder = build_model(name, tmp / name)
        sides = Sides(tmp / f"{name}-data", model_path=folder, batch=GPU_BATCH)
        rates = interleaved({
            "hubtune": lambda s=sides: s.hubtune(TIMED_STEPS, s.tiny_val_csv)[0],
            "trainer": lambda s=sides: s.trainer(TIMED_STEPS, evaluate=False)[0],
            "tutorial": lambda s=sides: s.tutorial(TUTORIAL_STEPS, evaluate=False)[0],
        }, repeats)
        setting = (f"{name} from config, batch {GPU_BATCH}, max_length {MAX_LENGTH}, {device}; "
                   f"{levers(sides)}")
        results += [
            Result("1 fine-tune (CUDA)", f"{name}: samples/s vs HF Trainer, bf16",
                   rates["hubtune"], rates["trainer"], "HF Trainer", "samples/s", ">= 1.25",
                   rates["hubtune"] / rates["trainer"] >= 1.25, notes=setting),
            Result("2 fine-tune (CUDA)", f"{name}: samples/s vs the tutorial loop",
                   rates["hubtune"], rates["tutorial"], "tutorial loop (fp32, padded)",
                   "samples/s", ">= 3", rates["hubtune"] / rates["tutorial"] >= 3,
                   notes=setting),
        ]
        results += efficiency(name, sides, folder, rates["hubtune"], ceiling, setting)
    return results


def levers(sides: Sides) -> str:
    """The speed settings hubtune's side trains with (RunPrepared.speed: TF32, attention
    kernel, fused AdamW, workers, ...), so a ratio that misses can be explained."""
    import threading

    from engine.core.config import RunConfig
    from engine.core.events import RunPrepared
    from engine.training.loop import train

    seen: list = []
    cfg = RunConfig.from_dict({
        "model": {"id": sides.model_id},
        "data": {"train": str(sides.train_csv), "validation": str(sides.tiny_val_csv),
                 "max_length": MAX_LENGTH},
        "train": {"epochs": 1, "max_steps": 1, "batch_size": sides.batch,
                  "eval_every": 10_000, "precision": "auto"}})
    train(cfg, lambda e: seen.append(e) if isinstance(e, RunPrepared) else None,
          threading.Event())
    speed = getattr(seen[0], "speed", None) if seen else None
    if not speed:
        return "speed settings not recorded"
    on = [k for k, v in speed.items() if v not in (False, None, 0, "off") and k != "device"]
    return "levers: " + ", ".join(f"{k}={speed[k]}" if speed[k] is not True else k
                                  for k in on)


def build_model(name: str, folder: Path) -> Path:
    """A randomly initialised model of that size, with MiniLM's (BERT uncased) tokenizer."""
    import transformers

    cls_name, kwargs = SIZES[name]
    config = getattr(transformers, cls_name)(vocab_size=30522, **kwargs)
    torch.manual_seed(0)
    transformers.AutoModel.from_config(config).save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(folder)
    return folder


def matmul_tflops() -> float:
    """The ceiling: a large bf16 matmul, timed in this process on this GPU."""
    a = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(MATMUL_N, MATMUL_N, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    runs = 20
    start = time.perf_counter()
    for _ in range(runs):
        a @ b
    torch.cuda.synchronize()
    return 2 * MATMUL_N ** 3 * runs / (time.perf_counter() - start) / 1e12


def train_flops_per_token(config: dict, seq_len: float) -> float:
    """Forward + backward FLOPs per real token: 6 per non-embedding weight, plus attention
    scores and values (12 * layers * width * sequence length)."""
    width = config.get("hidden_size") or config["dim"]
    layers = config.get("num_hidden_layers") or config["n_layers"]
    inner = config.get("intermediate_size") or config["hidden_dim"]
    weights = layers * (4 * width * width + 2 * width * inner)
    return 6 * weights + 12 * layers * width * seq_len


def efficiency(name: str, sides: Sides, folder: Path, samples_per_s: float, ceiling: float,
               setting: str) -> list[Result]:
    import json

    from engine.core.config import RunConfig
    from engine.training.plan import make_plan

    lengths = [min(len(ids), MAX_LENGTH) for ids in
               sides.tok(sides.train[0], truncation=True, max_length=MAX_LENGTH)["input_ids"]]
    mean_len = sum(lengths) / len(lengths)
    config = json.loads((folder / "config.json").read_text())
    useful = samples_per_s * mean_len * train_flops_per_token(config, mean_len) / 1e12

    # What earlier cases left allocated (models, the matmul operands) is not this run's:
    # collect it, and measure the peak above what stays.
    import gc

    gc.collect()
    torch.cuda.empty_cache()
    baseline = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    sides.hubtune(TIMED_STEPS, sides.tiny_val_csv)
    peak = torch.cuda.max_memory_allocated() - baseline
    # The plan at the longest batch this data really has (dynamic padding never pads
    # beyond it), which is what the peak was reached at.
    cfg = RunConfig.from_dict({
        "model": {"id": str(folder)}, "data": {"train": str(sides.train_csv),
                                               "max_length": max(lengths)},
        "train": {"batch_size": GPU_BATCH, "precision": "auto"}})
    memory = make_plan(cfg).stages[0].memory
    planned = memory.total - memory.cuda_context  # the peak above leaves the context out
    return [
        Result("7 GPU efficiency", f"{name}: useful-token TFLOP/s vs bf16 matmul",
               useful, ceiling, f"{MATMUL_N}^3 bf16 matmul", "TFLOP/s", ">= 0.40",
               useful / ceiling >= 0.40, notes=f"{setting}; {mean_len:.0f} real tokens per "
               "example, padding excluded"),
        Result("7 GPU efficiency", f"{name}: peak memory vs the plan's estimate",
               peak / 2**30, planned / 2**30, "plan", "GiB", "within 25%",
               abs(peak - planned) <= 0.25 * peak, notes="torch.cuda.max_memory_allocated "
               "over a timed run, less what was allocated before it"),
    ]
