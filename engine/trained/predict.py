"""Running a trained run's model on new input (the playground and `hubtune predict`).

One `Predictor` per saved model folder; what an input is, how the model
loads and what a prediction holds is the run's task adapter's
(`engine.tasks.task_for(head.task)`): text for classification and the
language models, words for token classification, `question ||| context` for
QA, an image path for image classification.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.core.errors import DataError, HubtuneError, ModelError
from engine.tasks.predictions import QA_SEPARATOR, FilePredictions, Prediction

__all__ = ["QA_SEPARATOR", "FilePredictions", "Prediction", "Predictor", "place_for_run",
           "predict_file"]


class Predictor:
    """A trained model loaded once, for many inputs, on `placement`'s device and in its
    precision (`engine.training.inference`; default: the CPU in float32)."""

    def __init__(self, model_dir: Path, placement=None) -> None:
        import torch

        from engine.modeling.loading import quiet_transformers

        quiet_transformers()
        self.dir = Path(model_dir)
        head_file = self.dir / "hubtune_head.json"
        if not head_file.is_file():
            raise ModelError(f"{model_dir} holds no trained hubtune model (no "
                             "hubtune_head.json); only completed runs have one.")
        self.head = json.loads(head_file.read_text(encoding="utf-8"))
        self.labels = self.head["labels"]
        self.task = self.head["task"]
        self.torch = torch
        from engine.tasks import task_for

        self.adapter = task_for(self.task)
        """The run's task adapter: how its model loads and what a prediction is."""
        self.adapter.load_trained(self)
        self.model.eval()
        from engine.training.inference import CPU

        self.placement = placement or CPU
        self.device = torch.device(self.placement.device)
        self.placement.prepare(self.model)

    def autocast(self):
        """The precision context every forward pass runs under (the run's, on this device)."""
        return self.placement.autocast()

    def on_device(self, batch) -> dict:
        """A tokenizer's (or collator's) tensors on the model's device."""
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}

    def predict(self, inputs: list[str]) -> list[Prediction]:
        """One prediction per input, in order; an empty input is a DataError."""
        if not inputs:
            return []
        for number, text in enumerate(inputs, 1):
            if not isinstance(text, str) or not text.strip():
                which = f"Input {number}" if len(inputs) > 1 else "The input"
                raise DataError(f"{which} is empty; give {self.adapter.input_kind} "
                                "to predict on.")
        with self.torch.no_grad(), self.autocast():
            return self.adapter.predict(self, inputs)

    def score_batches(self, texts: list[str], pairs: list[str] | None = None, *,
                      batch_size: int = 32, max_length: int = 512, progress=None):
        """Probabilities (N x labels; the value for regression) of a sequence head for
        many texts: batches of similar length, in input order on return."""
        return self.adapter.score_batches(self, texts, pairs, batch_size=batch_size,
                                          max_length=max_length, progress=progress)

    def readable(self, outputs) -> tuple[list[str], list[float]]:
        """(predicted label, its score) per row of `score_batches`' output."""
        return self.adapter.readable(self, outputs)


def place_for_run(store, config, device: str | None = None):
    """Where a run's model runs in this process (`engine.training.inference`): in the
    precision and TF32 choice of `config` (a RunConfig or a run's stored config dict),
    on the `device` asked for, else on a GPU the queue's slots in `store` show free
    (store None: no queue known, the first visible GPU)."""
    from engine.core.config import RunConfig, TrainSpec
    from engine.training.inference import place_inference

    try:
        train = config.train if isinstance(config, RunConfig) else \
            RunConfig.from_dict(config or {}).train
    except HubtuneError:  # a stored config this version no longer reads: the defaults
        train = TrainSpec()
    slots = None
    if store is not None and (device or "cuda").strip().lower() == "cuda":
        from engine.runs.queue import read_slots

        try:
            slots = read_slots(store)
        except HubtuneError:  # a bad HUBTUNE_* knob: `queue slots` says so; pick unaided
            slots = None
    return place_inference(train.precision, device=device, slots=slots, tf32=train.tf32)


# -- a whole file -------------------------------------------------------------

def predict_file(model_dir: Path, cfg, path: Path, *, column: str | None = None,
                 batch_size: int = 32, progress=None, placement=None,
                 encoding: str | None = None, model=None) -> FilePredictions:
    """Predict every row of a CSV/TSV/JSONL/Parquet file (an image folder for an image
    run) with a run's model, reading it as training read its data (the run's encoding
    and max_length); `progress(rows, total)` is called after each batch of `rows`.
    `placement`: where (`place_for_run`); default the first visible GPU (else the CPU) in
    the run's precision. What a row is and what is added to it is the task adapter's
    (`Task.predict_file`). `model`: a stand-in called as the run's own model is (the
    ONNX Runtime one of engine.trained.onnx_runtime).

    The file is a new one, read in its own encoding, never silently in the training
    file's: `encoding` when given, else what `new_file_encoding` finds (a byte-order
    mark, UTF-8, or the run's own with a note in `FilePredictions.notes`)."""
    import dataclasses

    from engine.data.reader import new_file_encoding

    encoding, note = new_file_encoding(Path(path), given=encoding, usual=cfg.data.encoding)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, encoding=encoding))
    if placement is None:
        from engine.training.inference import place_inference

        placement = place_inference(cfg.train.precision, tf32=cfg.train.tf32)
    predictor = Predictor(model_dir, placement)
    if model is not None:  # another runtime's model in the torch model's place (ONNX)
        predictor.model = model
    done = predictor.adapter.predict_file(predictor, cfg, Path(path), column, batch_size,
                                          progress)
    return dataclasses.replace(done, notes=(note,) if note else ())
