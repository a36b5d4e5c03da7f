"""Cached frozen-backbone features for image classification, through the same on-disk
feature cache text uses (engine/training/feature_cache.py).

An image model's feature is what its final linear layer reads (a torchvision backbone's
pooled output, a Hugging Face vision model's classifier input), taken with a forward
hook, as `data audit` takes it (engine/audit/extract.py); the head a head-only run
trains on cached features is that linear layer itself. An example's digest is taken over
its pixel tensor after the evaluation transform (size and normalisation included), so the
same image under another name, or read by an audit, finds the same vector. Augmented
training data never comes here: its pixels differ every epoch.

Imports torch; never textual.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import numpy as np
import torch

FEATURE = "final-linear-input"
"""The `pooling` word of an image model's cache key: what a vector is."""


def final_linear(model):
    """The model's last linear layer (the head a head-only run trains)."""
    from engine.tasks.image import _final_linear

    return _final_linear(model)[2]


def can_cache_image_features(model, cfg) -> bool:
    """Whether a head-only run of `model` may train on cached features: no augmentation,
    and the only parameters that train are the final linear layer's (so a head on its
    inputs is the whole trainable model)."""
    from engine.core.errors import ModelError

    if cfg.data.augment:
        return False
    try:
        last = final_linear(model)
    except ModelError:  # no linear layer: the plain loop says so in its own words
        return False
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    return bool(trainable) and trainable == {id(p) for p in last.parameters()}


def image_key(model, model_path, device_type: str, precision: str) -> str | None:
    """The cache folder of a vision model: a Hugging Face model's folder, or the weights
    file a torchvision backbone was read from (None for one started from random
    weights: nothing on disk names them)."""
    from engine.training.feature_cache import model_key

    if model_path is not None:
        return model_key(model_path, FEATURE, device_type, precision)
    weights = getattr(model, "weights_file", None)
    if weights is None:
        return None
    return model_key(weights, f"{FEATURE}:{model.arch}", device_type, precision)


def pixel_digests(collate, n: int, batch_size: int, stop=None) -> list[bytes]:
    """A 16-byte digest of each example's evaluation pixels (float32, as the model reads)."""
    from engine.data.examples import PreparationStopped

    out = []
    for start in range(0, n, batch_size):
        if stop is not None and stop.is_set():
            raise PreparationStopped
        pixels = collate(list(range(start, min(start + batch_size, n))))["pixel_values"]
        for row in pixels.float().contiguous().numpy():
            out.append(hashlib.blake2b(row.tobytes(), digest_size=16).digest())
    return out


@torch.no_grad()
def compute_image_features(model, collate, indices: list[int], batch_size: int, device, *,
                           progress=None, stop=None, done: int = 0, total: int = 0
                           ) -> np.ndarray:
    """The final linear layer's inputs for examples `indices`, in that order (float32)."""
    from engine.data.examples import PreparationStopped

    seen: list = []
    hook = final_linear(model).register_forward_hook(
        lambda module, args, out: seen.append(args[0].detach().float().flatten(1).cpu()))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(indices), batch_size):
            if stop is not None and stop.is_set():
                raise PreparationStopped
            batch = indices[start:start + batch_size]
            model(pixel_values=collate(batch)["pixel_values"].to(device))
            if progress is not None:
                progress(done + start + len(batch), total)
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(seen).numpy() if seen else np.zeros((0, 1), dtype=np.float32)


def cached_image_features(model, examples, collate, batch_size: int, device, *,
                          key: str | None, progress: Callable[[int, int], None] | None = None,
                          stop: threading.Event | None = None, write: bool = True):
    """Every example's features (float32 numpy, example order) through the cache of model
    `key` (None: no cache), and a `Reuse` saying how much was read."""
    from engine.training.feature_cache import Reuse, read_through

    n = len(examples)
    if key is None:
        return (compute_image_features(model, collate, list(range(n)), batch_size, device,
                                       progress=progress, stop=stop, total=n), Reuse(0, n))
    digests = pixel_digests(collate, n, batch_size, stop)
    return read_through(key, digests, lambda missing: compute_image_features(
        model, collate, missing, batch_size, device, progress=progress, stop=stop,
        done=n - len(missing), total=n), progress=progress, write=write)


def cache_image_features(model, task, data, processor, cfg, accelerator, model_path):
    """`engine.training.features.cache_features` for an image model: the validation
    collator, training batches, the head on features, the training collator and how many
    examples' features were read rather than computed, in words."""
    from types import SimpleNamespace

    from engine.training.features import FeatureBatches, FeatureCollator, HeadOnFeatures

    device = accelerator.device
    model.to(device)
    key = (image_key(model, model_path, device.type, accelerator.mixed_precision)
           if cfg.data.cache else None)
    feats, reused = {}, 0
    with accelerator.autocast():
        for split in ("train", "validation"):
            examples = getattr(data, split)
            collate = task.collator(examples, processor, cfg, train=False)
            found, how = cached_image_features(model, examples, collate,
                                               cfg.train.batch_size * 2, device, key=key,
                                               write=accelerator.is_main_process)
            feats[split] = torch.from_numpy(found).to(device)
            reused += how.reused
    head = HeadOnFeatures(SimpleNamespace(head=final_linear(model), problem_type="single_label"))
    return (FeatureCollator(feats["validation"], data.validation.labels, False),
            FeatureBatches(len(data.train), cfg.train.batch_size, cfg.train.seed),
            head,
            FeatureCollator(feats["train"], data.train.labels, False),
            f"{reused} of {len(data.train) + len(data.validation)} read from the feature cache")
