"""The frozen-feature cache on disk (engine/training/feature_cache.py): vectors found by
their examples' token ids whatever the order or split, equal examples sharing one entry,
digests ending in NUL bytes kept whole, a damaged chunk dropped, the oldest pruned."""

from __future__ import annotations

import os

import numpy as np

from engine.data.examples import SequenceExamples
from engine.training import feature_cache
from engine.training.feature_cache import FeatureCache, example_digests, model_key


def examples(ids: list[list[int]], types=None) -> SequenceExamples:
    return SequenceExamples(ids, types, [0] * len(ids))


def test_vectors_come_back_by_content_in_any_order_with_duplicates(tmp_path):
    cache = FeatureCache("k", root=tmp_path)
    first = examples([[1, 2], [3], [4, 5, 6]])
    cache.add(example_digests(first), np.arange(9, dtype=np.float32).reshape(3, 3))
    later = examples([[4, 5, 6], [7], [1, 2], [1, 2]])  # another split: reordered, repeated
    found, missing = cache.lookup(example_digests(later))
    assert missing == [1]
    assert found[0].tolist() == [6, 7, 8] and found[2].tolist() == found[3].tolist() == [0, 1, 2]
    pair = examples([[1, 2]], [[0, 1]])  # token types make another example
    assert cache.lookup(example_digests(pair))[1] == [0]


def test_a_digest_ending_in_nul_bytes_is_found_again(tmp_path):
    ids = next([[i]] for i in range(10_000) if example_digests(examples([[i]]))[0][-1] == 0)
    cache = FeatureCache("k", root=tmp_path)
    cache.add(example_digests(examples(ids)), np.ones((1, 2), dtype=np.float32))
    assert cache.lookup(example_digests(examples(ids)))[1] == []


def test_a_damaged_chunk_is_dropped_and_the_oldest_go_past_the_limit(tmp_path, monkeypatch):
    cache = FeatureCache("k", root=tmp_path)
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "bad.npz").write_bytes(b"not a zip")
    found, missing = cache.lookup(example_digests(examples([[1]])))
    assert found is None and missing == [0] and not (tmp_path / "k" / "bad.npz").exists()

    for n in range(3):
        cache.add(example_digests(examples([[n]])), np.zeros((1, 256), dtype=np.float32))
        chunk = max((tmp_path / "k").glob("*.npz"), key=lambda p: p.stat().st_mtime_ns)
        os.utime(chunk, (n, n))  # written in this order
    size = next((tmp_path / "k").glob("*.npz")).stat().st_size
    monkeypatch.setattr(feature_cache, "MAX_BYTES", 2 * size)
    cache.add(example_digests(examples([[9]])), np.zeros((1, 256), dtype=np.float32))
    assert cache.lookup(example_digests(examples([[0], [1], [2], [9]])))[1] == [0, 1]


def test_the_model_key_follows_the_weights_pooling_device_and_precision(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    key = model_key(tmp_path, "mean", "cpu", "no")
    assert key == model_key(tmp_path, "mean", "cpu", "no")
    assert len({key, model_key(tmp_path, "cls", "cpu", "no"),
                model_key(tmp_path, "mean", "cuda", "no"),
                model_key(tmp_path, "mean", "cpu", "bf16")}) == 4
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert model_key(tmp_path, "mean", "cpu", "no") != key


def test_an_image_is_decoded_once_whether_its_features_are_cached_or_not(tmp_path, tiny_vit,
                                                                          monkeypatch):
    """Image features through the cache: each image is read and transformed once per pass
    (its digest and, when the cache lacks it, its features from the same pixels), a
    repeated image is run once, the progress counts every image, and the vectors equal
    those computed without the cache."""
    import torch

    from engine.core.config import RunConfig
    from engine.tasks import task_for
    from engine.tasks.image import ImageExamples
    from engine.training.image_features import cached_image_features, compute_image_features
    from tests.support.task_data import write_digits_folder

    root = write_digits_folder(tmp_path / "digits", per_class=5, classes=range(2))
    paths = sorted(str(p) for p in root.rglob("*.png"))
    paths.append(paths[0])  # the same image twice
    cfg = RunConfig.from_dict({"model": {"id": str(tiny_vit)},
                               "head": {"task": "image-classification"},
                               "data": {"train": str(root)}})
    task = task_for("image-classification")
    processor, path = task.load_processor(cfg)
    examples = ImageExamples(paths, [0] * len(paths))
    model = task.build(cfg, path, type("Data", (), {"labels": ("0", "1")})()).eval()
    collate = task.collator(examples, processor, cfg, train=False)
    read: list[int] = []

    def counting(batch):
        read.extend(batch)
        return collate(batch)

    plain = compute_image_features(model, collate, list(range(len(paths))), 4,
                                   torch.device("cpu"))
    seen: list = []
    ran: list[int] = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: ran.append(len(kwargs["pixel_values"])), with_kwargs=True)
    monkeypatch.setattr(feature_cache, "cache_root", lambda: tmp_path / "cache")
    key = model_key(path, "test", "cpu", "no")
    first, how = cached_image_features(model, examples, counting, 4, torch.device("cpu"),
                                       key=key, progress=lambda d, t: seen.append((d, t)))
    assert sorted(read) == list(range(len(paths))) and how.computed == len(paths)
    assert sum(ran) == len(paths) - 1  # the repeated image once
    assert seen[-1] == (len(paths), len(paths))
    read.clear()
    ran.clear()
    again, how = cached_image_features(model, examples, counting, 4, torch.device("cpu"),
                                       key=key)
    assert sorted(read) == list(range(len(paths))) and how.reused == len(paths)
    assert ran == []
    np.testing.assert_allclose(first, plain, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(again, first)
    assert first[0].tolist() == first[-1].tolist()
