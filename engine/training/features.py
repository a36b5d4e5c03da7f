"""Training a head on cached backbone features, for fully frozen backbones.

When nothing in the backbone learns and inputs are not augmented, the
backbone's pooled output for an example is the same every epoch: computing
it once (in eval mode, so dropout does not perturb a frozen feature
extractor) and training the head on the cached tensors skips the backbone
entirely after the first pass. The vectors are also kept on disk per example
(engine/training/feature_cache.py, through `cached_features`), so a later run, or
`data audit`, on the same data and model runs the backbone on none of them again.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from engine.data.loading import SequenceCollator, SequenceExamples, sorted_batches
from engine.modeling.loading import task_loss


class HeadOnFeatures(nn.Module):
    """The classifier head of a `SequenceClassifier`, fed pooled features directly."""

    def __init__(self, classifier) -> None:
        super().__init__()
        self.head = classifier.head
        self.problem_type = classifier.problem_type

    def forward(self, features, labels=None):
        logits = self.head(features)
        loss = None if labels is None else task_loss(self.problem_type, logits, labels)
        return loss, logits


@torch.no_grad()
def compute_features(classifier, examples: SequenceExamples, pad_id: int, batch_size: int,
                     device, regression: bool, *, progress=None, stop=None) -> torch.Tensor:
    """Pooled backbone output for every example, in example order, on `device`.
    `progress(done, total)` after each batch; a set `stop` event ends it between batches
    (PreparationStopped)."""
    from engine.data.examples import PreparationStopped

    was_training = classifier.training
    classifier.eval()
    collate = SequenceCollator(examples, pad_id, regression)
    out, done = None, 0
    for indices in sorted_batches(examples.lengths, batch_size):
        if stop is not None and stop.is_set():
            classifier.train(was_training)
            raise PreparationStopped
        batch = {k: v.to(device) for k, v in collate(indices).items() if k != "labels"}
        pooled = classifier.pool(**batch).float()
        if out is None:
            out = torch.empty(len(examples), pooled.shape[-1], device=device)
        out[torch.tensor(indices, device=device)] = pooled
        done += len(indices)
        if progress is not None:
            progress(done, len(examples))
    classifier.train(was_training)
    return out


class FeatureBatches:
    """Seeded random batches of example indices; the order is a function of (seed, epoch).
    Its batch size is `size`, for the reason `LengthGroupedBatches` gives."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.size, self.seed = n, batch_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        idx = list(range(self.n))
        random.Random(self.seed * 1_000_003 + self.epoch).shuffle(idx)
        return iter([idx[i:i + self.size] for i in range(0, self.n, self.size)])

    def __len__(self) -> int:
        return -(-self.n // self.size)


class FeatureCollator:
    """Batches of cached backbone features (not tokens) with their labels."""

    def __init__(self, features: torch.Tensor, labels, regression: bool) -> None:
        self.features = features
        self.device = features.device
        """Where the batches live (the features were computed there): a loader over them
        must neither pin them nor hand them to worker processes."""
        self.labels = torch.tensor(labels, dtype=torch.float32 if regression else torch.long,
                                   device=features.device)

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.tensor(indices, device=self.features.device)
        return {"features": self.features[index], "labels": self.labels[index]}


def cache_features(model, data, pad_id: int, cfg, accelerator, float_labels: bool,
                   model_path=None):
    """The backbone's features of both splits, computed once on the accelerator's device
    (or read from the on-disk feature cache an audit or an earlier run filled, when
    `model_path` is given and data.cache is on); returns the validation collator, the
    training batches, the head that trains on the features, the training collator and
    how many examples' features were read rather than computed, in words."""
    from engine.training.feature_cache import model_key

    device = accelerator.device
    model.to(device)
    key = None
    if model_path is not None and cfg.data.cache and getattr(model, "pooling", None):
        key = model_key(model_path, model.pooling, device.type, accelerator.mixed_precision)
    feats, reused = {}, 0
    with accelerator.autocast():
        for split in ("train", "validation"):
            feats[split], how = cached_features(
                model, getattr(data, split), pad_id, cfg.train.batch_size * 2, device,
                key=key, write=accelerator.is_main_process)
            reused += how.reused
    return (FeatureCollator(feats["validation"], data.validation.labels, float_labels),
            FeatureBatches(len(data.train), cfg.train.batch_size, cfg.train.seed),
            HeadOnFeatures(model),
            FeatureCollator(feats["train"], data.train.labels, float_labels),
            f"{reused} of {len(data.train) + len(data.validation)} read from the feature cache")


class _Rows:
    """A view of `seq` at `rows` (a split's examples the cache lacks)."""

    def __init__(self, seq, rows: list[int]) -> None:
        self.seq, self.rows = seq, rows

    def __getitem__(self, i):
        return self.seq[self.rows[i]]

    def __len__(self) -> int:
        return len(self.rows)


class _Subset:
    def __init__(self, examples, rows: list[int]) -> None:
        self.input_ids = _Rows(examples.input_ids, rows)
        types = getattr(examples, "token_type_ids", None)
        self.token_type_ids = None if types is None else _Rows(types, rows)
        self.labels = [0] * len(rows)
        self.lengths = [len(self.input_ids[i]) for i in range(len(rows))]

    def __len__(self) -> int:
        return len(self.lengths)


def cached_features(classifier, examples, pad_id: int, batch_size: int, device, *,
                    key: str | None, progress: Callable[[int, int], None] | None = None,
                    stop: threading.Event | None = None, write: bool = True):
    """`compute_features` through the cache of model `key` (None: no cache): the tensor
    on `device` in example order, and a `Reuse` saying how much was read."""
    from engine.training.feature_cache import Reuse, example_digests, read_through

    if key is None:
        return (compute_features(classifier, examples, pad_id, batch_size, device, False,
                                 progress=progress, stop=stop), Reuse(0, len(examples)))

    def compute(missing: list[int]) -> np.ndarray:
        return compute_features(classifier, _Subset(examples, missing), pad_id, batch_size,
                                device, False, progress=progress, stop=stop
                                ).float().cpu().numpy()

    found, reuse = read_through(key, example_digests(examples), compute, progress=progress,
                                write=write)
    return torch.from_numpy(found).to(device), reuse
