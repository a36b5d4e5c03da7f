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
