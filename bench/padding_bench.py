"""Case 6: padding efficiency on the tweets (real tokens / computed tokens)."""

from __future__ import annotations

import random

from bench.common import Result
from bench.tweets import load_tweets, minilm_path

BATCH = 32
MAX_LENGTH = 128


def efficiency(lengths: list[int], batches: list[list[int]], pad_to: int | None = None) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    computed = sum(len(b) * (pad_to or max(lengths[i] for i in b)) for b in batches)
    return real / computed


def run(repeats: int = 5) -> list[Result]:
    from transformers import AutoTokenizer

    from engine.data import LengthGroupedBatches

    texts, _, _ = load_tweets()
    tok = AutoTokenizer.from_pretrained(minilm_path())
    lengths = [len(x) for x in tok(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]]
    idx = list(range(len(lengths)))
    random.Random(0).shuffle(idx)
    random_batches = [idx[i:i + BATCH] for i in range(0, len(idx), BATCH)]
    grouped = LengthGroupedBatches(lengths, BATCH, seed=0).batches()
    padded = efficiency(lengths, random_batches, pad_to=MAX_LENGTH)
    dynamic = efficiency(lengths, random_batches)
    ours = efficiency(lengths, grouped)
    note = f"{len(lengths):,} tweets, batch {BATCH}, max_length {MAX_LENGTH}"
    return [
        Result("6 padding", "real/computed tokens, dynamic + length-grouped", ours, padded,
               "padded to max_length", "", notes=f"{note}; dynamic padding of random "
               f"batches alone: {dynamic:.3f}"),
    ]
