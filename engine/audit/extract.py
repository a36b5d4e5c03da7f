"""The audit's features: the config's model used as a frozen extractor.

Text: the pooled backbone output a head-only run trains its head on (the checkpoint's
own pooling, `SequenceClassifier.pool`), tokenised as training tokenises, on the device
and at the precision a run would use, read and written through the frozen-feature cache
(engine/training/feature_cache.py), so a head-only run after an audit (or an audit after
such a run) computes nothing again. Images: what the model's final linear layer reads
(the pooled features of a torchvision backbone or a Hugging Face vision model), with the
evaluation transform, through the same cache under the key an image head-only run uses
(engine/training/image_features.py: a Hugging Face model's folder, or the weights file a
torchvision backbone was read from).

`progress(done, total)` after each batch; a set `stop` ends the work between batches
(`PreparationStopped`). Imports torch; never textual.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np

from engine.audit.sources import Split
from engine.core.config import RunConfig
from engine.training.feature_cache import Reuse

Progress = Callable[[int, int], None]


def device_and_precision(cfg: RunConfig):
    """The torch device and accelerate precision word a run of `cfg` would use here."""
    import torch

    from engine.training.precision import resolve_precision

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return device, resolve_precision(cfg.train.precision)


def _autocast(device, precision: str):
    import contextlib

    import torch

    if precision == "no":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


class TextExtractor:
    """Loads the model once; `features(split)` for each split."""

    def __init__(self, cfg: RunConfig) -> None:
        from engine.modeling.lengths import fit_lengths
        from engine.modeling.loading import build_model
        from engine.tasks import task_for

        task = task_for(cfg.head.task)
        self.tokenizer, path = task.load_processor(cfg)
        self.cfg, _ = fit_lengths(cfg, path)
        built = build_model(cfg.model, cfg.head, 2, path=path)
        self.model = built.model.eval()
        self.device, self.precision = device_and_precision(cfg)
        self.model.to(self.device)
        from engine.training.feature_cache import model_key

        self.key = (model_key(path, built.pooling, self.device.type, self.precision)
                    if cfg.data.cache else None)

    def features(self, split: Split, progress: Progress | None,
                 stop: threading.Event | None) -> tuple[np.ndarray, Reuse]:
        from engine.data.examples import SequenceExamples, stoppable, tokenise
        from engine.training.features import cached_features

        with stoppable(stop):
            enc = tokenise(self.tokenizer, split.texts, split.pairs, truncation=True,
                           max_length=self.cfg.data.max_length, padding=False,
                           return_attention_mask=False)
        examples = SequenceExamples(enc["input_ids"],
                                    enc.get("token_type_ids") if split.pairs else None,
                                    [0] * len(split.texts))
        if not len(examples):
            return np.zeros((0, 1), dtype=np.float32), Reuse(0, 0)
        pad = self.tokenizer.pad_token_id or 0
        with _autocast(self.device, self.precision):
            found, how = cached_features(self.model, examples, pad,
                                         self.cfg.train.batch_size * 2, self.device,
                                         key=self.key, progress=progress, stop=stop)
        return found.float().cpu().numpy(), how


class ImageExtractor:
    """The inputs of a vision model's final linear layer, one row per image."""

    def __init__(self, cfg: RunConfig, names: list[str]) -> None:
        from engine.tasks import task_for

        self.cfg = cfg
        self.task = task_for(cfg.head.task)
        self.processor, path = self.task.load_processor(cfg)
        self.model = self.task.build(cfg, path, SimpleNamespace(labels=tuple(names))).eval()
        self.device, self.precision = device_and_precision(cfg)
        self.model.to(self.device)
        from engine.training.image_features import image_key

        # The key a head-only run of this model uses (engine/training/image_features.py).
        self.key = (image_key(self.model, path, self.device.type, self.precision)
                    if cfg.data.cache else None)

    def features(self, split: Split, progress: Progress | None,
                 stop: threading.Event | None) -> tuple[np.ndarray, Reuse]:
        import torch

        from engine.tasks.image import ImageExamples
        from engine.training.image_features import cached_image_features

        examples = ImageExamples(list(split.paths), [0] * len(split.paths))
        if not len(examples):
            return np.zeros((0, 1), dtype=np.float32), Reuse(0, 0)
        collate = self.task.collator(examples, self.processor, self.cfg, train=False)
        with torch.inference_mode(), _autocast(self.device, self.precision):
            return cached_image_features(self.model, examples, collate,
                                         self.cfg.train.batch_size, self.device, key=self.key,
                                         progress=progress, stop=stop)
