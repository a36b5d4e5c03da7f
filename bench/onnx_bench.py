"""Case: `predict --file --runtime onnx` against the PyTorch `predict --file`, on the CPU.

One run (the packaged MiniLM with mean pooling and a classification head, a few steps
on tweets, as the predict case trains it) predicts one CSV of tweets both ways through
hubtune's `predict_file`, same batch: PyTorch (the run's model, float32 on the CPU) and
ONNX Runtime (the run's ONNX model standing in for it, made once before timing; fp32,
and the dynamic int8 copy as a third row). Times cover reading the file and predicting
every row (the model loads before, on both sides). Interleaved repeats; the share of
rows given the same label as PyTorch.

Both sides go through the same `predict_file`: the same tokenizer calls, the same
longest-first order and batches, torch under `inference_mode`. ONNX Runtime's session has
as many intra-op threads as torch (`--threads`), and fp32 runs the fused graph
(`model.ort.onnx`: attention, skip layer norm and bias GELU as ONNX Runtime's own kernels,
checked against PyTorch at export like model.onnx).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import Result, interleaved
from bench.predict_bench import BATCH, _train_run
from bench.throughput_bench import _write_csv
from bench.tweets import load_tweets

ROWS = 1024


def run(repeats: int = 5) -> list[Result]:
    from engine.modeling.loading import quiet_transformers
    from engine.trained.onnx_runtime import onnx_model
    from engine.trained.predict import predict_file
    from engine.training.inference import CPU

    quiet_transformers()
    tmp = Path(tempfile.mkdtemp(prefix="hubtune-bench-onnx-"))
    texts, labels, names = load_tweets(ROWS + 512, seed=3)
    train_csv = _write_csv(tmp / "train.csv", texts[:512], labels[:512], names)
    data_csv = _write_csv(tmp / "predict.csv", texts[512:], labels[512:], names)
    _, cfg = _train_run(tmp, train_csv)
    run_dir = tmp / "run"
    fp32, _ = onnx_model(run_dir, config=cfg.to_dict(), summary={}, run_name="bench")
    int8, note = onnx_model(run_dir, config=cfg.to_dict(), summary={}, run_name="bench",
                            quantize=True)
    predicted: dict[str, list] = {}

    def side(name, model):
        def go() -> float:
            start = time.perf_counter()
            table = predict_file(run_dir / "model", cfg, data_csv, batch_size=BATCH,
                                 placement=CPU, model=model).table
            elapsed = time.perf_counter() - start
            predicted[name] = list(table["predicted"])
            return ROWS / elapsed
        return go

    rates = interleaved({"torch": side("torch", None), "onnx": side("onnx", fp32),
                         "int8": side("int8", int8)}, repeats)

    def same(name: str) -> float:
        return sum(a == b for a, b in zip(predicted[name], predicted["torch"], strict=True)) / ROWS

    common = (f"MiniLM-L6 run, {ROWS} tweets, batch {BATCH}, CPU; the model loaded before "
              "timing on both sides")
    return [
        Result("onnx predict", "rows/s, ONNX Runtime fp32 vs PyTorch", rates["onnx"],
               rates["torch"], "PyTorch predict --file", "rows/s", ">= 1.5",
               rates["onnx"] / rates["torch"] >= 1.5 and same("onnx") >= 0.995,
               notes=f"{common}; same label on {same('onnx'):.1%} of rows (target 99.5%)"),
        Result("onnx predict", "rows/s, ONNX Runtime int8 vs PyTorch", rates["int8"],
               rates["torch"], "PyTorch predict --file", "rows/s", "reported", None,
               notes=f"{common}; same label as fp32 PyTorch on {same('int8'):.1%} of rows"),
    ]
