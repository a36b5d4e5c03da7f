"""Training a head on cached backbone features, for fully frozen backbones.

When nothing in the backbone learns and inputs are not augmented, the
backbone's pooled output for an example is the same every epoch: computing
it once (in eval mode, so dropout does not perturb a frozen feature
extractor) and training the head on the cached tensors skips the backbone
entirely after the first pass.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

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
                     device, regression: bool) -> torch.Tensor:
    """Pooled backbone output for every example, in example order, on `device`."""
    was_training = classifier.training
    classifier.eval()
    collate = SequenceCollator(examples, pad_id, regression)
    out = None
    for indices in sorted_batches(examples.lengths, batch_size):
        batch = {k: v.to(device) for k, v in collate(indices).items() if k != "labels"}
        pooled = classifier.pool(**batch).float()
        if out is None:
            out = torch.empty(len(examples), pooled.shape[-1], device=device)
        out[torch.tensor(indices, device=device)] = pooled
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


def cache_features(model, data, pad_id: int, cfg, accelerator, float_labels: bool):
    """The backbone's features of both splits, computed once on the accelerator's device;
    returns the validation collator, the training batches, the head that trains on the
    features and the training collator."""
    device = accelerator.device
    model.to(device)
    with accelerator.autocast():
        feats = {split: compute_features(model, getattr(data, split), pad_id,
                                         cfg.train.batch_size * 2, device, float_labels)
                 for split in ("train", "validation")}
    return (FeatureCollator(feats["validation"], data.validation.labels, float_labels),
            FeatureBatches(len(data.train), cfg.train.batch_size, cfg.train.seed),
            HeadOnFeatures(model),
            FeatureCollator(feats["train"], data.train.labels, float_labels))
