"""Case 6: padding efficiency on the tweets (real tokens / computed tokens), and
reading the tokenised tweets from the data cache against tokenising them."""

from __future__ import annotations

import random

from bench.common import Result, interleaved
from bench.tweets import load_tweets, minilm_path

BATCH = 32
MAX_LENGTH = 128


def efficiency(lengths: list[int], batches: list[list[int]], pad_to: int | None = None) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    computed = sum(len(b) * (pad_to or max(lengths[i] for i in b)) for b in batches)
    return real / computed


def run(repeats: int = 5) -> list[Result]:
    from transformers import AutoTokenizer

    from engine.data.loading import LengthGroupedBatches

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
        cache_result(repeats),
    ]


def cache_result(repeats: int) -> Result:
    """Loading the whole tweets file for a run: a cache hit against reading + tokenising."""
    import dataclasses
    import os
    import tempfile
    import time
    from pathlib import Path

    from engine.core.config import load_config
    from engine.tasks import task_for
    from engine.training.data_cache import load_cached

    os.environ["HUBTUNE_HOME"] = tempfile.mkdtemp(prefix="hubtune-bench-cache-")
    example = Path(__file__).resolve().parents[1] / "examples" / "sentiment.yaml"
    cfg = load_config(example)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, limit=None))
    task = task_for(cfg.head.task)
    tokenizer, _ = task.load_processor(cfg)
    load = lambda: task.load_data(cfg, tokenizer)  # noqa: E731
    data, _ = load_cached(task, cfg, tokenizer, load)  # fills the cache

    def timed(fn):
        def go() -> float:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        return go

    def hit():
        _, was_hit = load_cached(task, cfg, tokenizer, load)
        assert was_hit

    times = interleaved({"cache": timed(hit), "tokenise": timed(load)}, repeats)
    n = len(data.train) + len(data.validation)
    return Result("6 data", "load the tweets for a run, s (tokenise ÷ cache)",
                  times["tokenise"] / times["cache"], unit="x", notes=f"{n:,} tweets, "
                  f"max_length {cfg.data.max_length}: read + tokenise {times['tokenise']:.2f} s,"
                  f" cache hit {times['cache']:.2f} s (key includes the tokenizer hash)")
