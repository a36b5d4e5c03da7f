"""The feature-extraction "run": no head and no training; the data embedded with the
checkpoint's own pooling, the vectors saved (and the model, for predict)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from engine.core.config import RunConfig
from engine.core.events import Event, Note, Outcome, StepLogged
from engine.data.loading import PreparationStopped, stoppable


def embed(cfg: RunConfig, emit: Callable[[Event], None], stop: threading.Event,
          out_dir: Path | None) -> Outcome:
    """The feature-extraction "run": no head, no training; embed the data with the
    checkpoint's own pooling and save the vectors (and the model, for predict)."""
    from engine.data.file_rows import read_rows
    from engine.data.loading import check_text_column, pick_column, tokenise
    from engine.modeling.lengths import fit_lengths
    from engine.modeling.loading import build_model
    from engine.training.features import compute_features
    from engine.training.inference import place_inference

    def check_stop() -> None:
        if stop.is_set():
            raise PreparationStopped

    check_stop()
    from engine.tasks import task_for

    # The task adapter's loader: the model is checked (damaged files, a head that does
    # not fit it) before its tokenizer loads.
    tokenizer, path = task_for(cfg.head.task).load_processor(cfg)
    cfg, clamped = fit_lengths(cfg, path)
    for limit in clamped:
        emit(Note(limit.notice, level="warning"))
    # The whole file in its own order (no split, no shuffled sample): row i of the
    # embeddings is row i of the file.
    data_path = cfg.resolve(cfg.data.train)
    frame = read_rows(data_path, encoding=cfg.data.encoding)
    if cfg.data.limit is not None:
        frame = frame.head(cfg.data.limit)
    column = pick_column(frame, data_path, cfg.data.text_column, "text_column", ("sentence",))
    check_text_column(frame, data_path, column, "text_column")
    texts = ["" if not isinstance(t, str) else t for t in frame[column]]
    with stoppable(stop):
        enc = tokenise(tokenizer, texts, truncation=True, max_length=cfg.data.max_length,
                       return_attention_mask=False)
    from engine.data.loading import SequenceExamples

    examples = SequenceExamples(enc["input_ids"], None, [0] * len(texts))
    built = build_model(cfg.model, cfg.head, 1, path=path)
    check_stop()
    # The worker's CUDA_VISIBLE_DEVICES is the run's slot: its first GPU, in the run's
    # precision (the same decision as every other inference path).
    placement = place_inference(cfg.train.precision, tf32=cfg.train.tf32)
    placement.prepare(built.model)
    emit(Note(f"Embedding {len(texts)} texts from {column!r} with {built.pooling} pooling "
              f"on {placement.describe()}"))
    started = time.perf_counter()
    with torch.inference_mode(), placement.autocast():
        vectors = compute_features(built.model, examples, tokenizer.pad_token_id or 0,
                                   cfg.train.batch_size * 2, torch.device(placement.device),
                                   False).cpu()
    elapsed = time.perf_counter() - started
    emit(StepLogged(step=1, epoch=1.0, metrics={"samples_per_s": len(texts) / elapsed}))
    summary = {"examples": len(texts), "dimension": int(vectors.shape[1]),
               "pooling": built.pooling, "column": column}
    if out_dir is not None:
        from safetensors.torch import save_file

        from engine.modeling.export import save_model

        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({"embeddings": vectors.contiguous()}, str(out_dir / "embeddings.safetensors"))
        save_model(built.model, tokenizer, (), built.pooling, cfg, out_dir / "model")
        summary["file"] = str(out_dir / "embeddings.safetensors")
    return Outcome("completed", summary=summary)
