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
from collections.abc import Callable, Collection
from contextlib import contextmanager

import numpy as np
import torch

FEATURE = "final-linear-input"
"""The `pooling` word of an image model's cache key: what a vector is."""


def final_linear(model):
    """The model's last linear layer (the head a head-only run trains)."""
    from engine.tasks.image import _final_linear

    return _final_linear(model)[2]


def can_cache_image_features(model, cfg, trainable: Collection[str] | None = None) -> bool:
    """Whether a head-only run of `model` may train on cached features: no augmentation,
    and the only parameters that train are the final linear layer's (so a head on its
    inputs is the whole trainable model). `trainable`: the names of the parameters that
    train (by default those that require gradients; the memory plan gives its freeze
    plan's, for a model on the meta device)."""
    from engine.core.errors import ModelError

    if cfg.data.augment:
        return False
    try:
        last = final_linear(model)
    except ModelError:  # no linear layer: the plain loop says so in its own words
        return False
    own = {id(p) for p in last.parameters()}
    named = list(model.named_parameters())
    training = {n for n, p in named if (p.requires_grad if trainable is None else n in trainable)}
    return bool(training) and training == {n for n, p in named if id(p) in own}


def head_on_final_inputs(model):
    """The model's final linear layer as a head fed that layer's inputs (what a head-only
    run on cached features trains)."""
    from types import SimpleNamespace

    from engine.training.features import HeadOnFeatures

    return HeadOnFeatures(SimpleNamespace(head=final_linear(model), problem_type="single_label"))


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


def pixel_digests(pixels: torch.Tensor) -> list[bytes]:
    """A 16-byte digest of each image of a batch of evaluation pixels (as float32)."""
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest()
            for row in pixels.float().contiguous().numpy()]


@contextmanager
def final_inputs(model):
    """The model in evaluation mode, with the inputs of its final linear layer gathered
    in the list this yields (a float32 row per image) by every forward pass."""
    seen: list = []
    hook = final_linear(model).register_forward_hook(
        lambda module, args, out: seen.append(args[0].detach().float().flatten(1).cpu()))
    was_training = model.training
    model.eval()
    try:
        yield seen
    finally:
        hook.remove()
        model.train(was_training)


def _stopping(stop: threading.Event | None) -> None:
    from engine.data.examples import PreparationStopped

    if stop is not None and stop.is_set():
        raise PreparationStopped


@torch.no_grad()
def compute_image_features(model, collate, indices: list[int], batch_size: int, device, *,
                           progress=None, stop=None) -> np.ndarray:
    """The final linear layer's inputs for examples `indices`, in that order (float32)."""
    with final_inputs(model) as seen:
        for start in range(0, len(indices), batch_size):
            _stopping(stop)
            batch = indices[start:start + batch_size]
            model(pixel_values=collate(batch)["pixel_values"].to(device))
            if progress is not None:
                progress(start + len(batch), len(indices))
    return torch.cat(seen).numpy() if seen else np.zeros((0, 1), dtype=np.float32)


@torch.no_grad()
def _read_once(model, collate, n: int, batch_size: int, device, known: set[bytes], *,
               progress=None, stop=None) -> tuple[list[bytes], dict[bytes, np.ndarray]]:
    """Every example's digest, and the features of those whose digest is not `known`,
    each image decoded and transformed once: the features come from the pixels the
    digest was taken over."""
    digests: list[bytes] = []
    fresh: dict[bytes, np.ndarray] = {}
    with final_inputs(model) as seen:
        for start in range(0, n, batch_size):
            _stopping(stop)
            pixels = collate(list(range(start, min(start + batch_size, n))))["pixel_values"]
            names = pixel_digests(pixels)
            digests += names
            need: dict[bytes, int] = {}
            for k, name in enumerate(names):
                if name not in known and name not in fresh:
                    need.setdefault(name, k)  # an image twice in one batch: once
            if need:
                seen.clear()
                model(pixel_values=pixels[list(need.values())].to(device))
                fresh.update(zip(need, torch.cat(seen).numpy(), strict=True))
            if progress is not None:
                progress(len(digests), n)
    return digests, fresh


def cached_image_features(model, examples, collate, batch_size: int, device, *,
                          key: str | None, progress: Callable[[int, int], None] | None = None,
                          stop: threading.Event | None = None, write: bool = True):
    """Every example's features (float32 numpy, example order) through the cache of model
    `key` (None: no cache), and a `Reuse` saying how much was read."""
    from engine.training.feature_cache import FeatureCache, Reuse, read_through

    n = len(examples)
    if key is None:
        return (compute_image_features(model, collate, list(range(n)), batch_size, device,
                                       progress=progress, stop=stop), Reuse(0, n))
    digests, fresh = _read_once(model, collate, n, batch_size, device,
                                FeatureCache(key).known(), progress=progress, stop=stop)

    def missing_features(missing: list[int]) -> np.ndarray:
        # A chunk another process pruned after `known` was read: those images again.
        again = [i for i in missing if digests[i] not in fresh]
        if again:
            fresh.update(zip((digests[i] for i in again), compute_image_features(
                model, collate, again, batch_size, device, stop=stop), strict=True))
        return np.stack([fresh[digests[i]] for i in missing])

    return read_through(key, digests, missing_features, write=write)


def cache_image_features(model, task, data, processor, cfg, accelerator, model_path):
    """`engine.training.features.cache_features` for an image model: the validation
    collator, training batches, the head on features, the training collator and how many
    examples' features were read rather than computed, in words."""
    from engine.training.features import FeatureBatches, FeatureCollator

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
    head = head_on_final_inputs(model)
    return (FeatureCollator(feats["validation"], data.validation.labels, False),
            FeatureBatches(len(data.train), cfg.train.batch_size, cfg.train.seed),
            head,
            FeatureCollator(feats["train"], data.train.labels, False),
            f"{reused} of {len(data.train) + len(data.validation)} read from the feature cache")
