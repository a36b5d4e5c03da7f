"""How long a data file's examples are in a model's tokens, and what max_length fits them.

A max_length set too low silently cuts examples; one set too high costs
memory and time on every padded batch. `token_lengths` tokenises a seeded
sample of the file with the model's own tokenizer and suggests the smallest
common length that holds 99% of examples whole, capped at what the model
accepts. Loads transformers (not torch); the TUI calls it from a thread.
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import ModelSpec

SAMPLE = 5000
"""Rows tokenised at most: percentiles of a 5,000-row sample are within a token or two."""
BUCKETS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096,
           6144, 8192)
"""Suggested lengths: round numbers that tile well on accelerators."""


@dataclass(frozen=True)
class LengthStats:
    rows: int
    """Rows in the file."""
    sampled: int
    """Rows tokenised."""
    mean: float
    p50: int
    p95: int
    p99: int
    longest: int
    model_limit: int | None
    """The most tokens the model takes (its position embeddings), when known."""
    suggested: int
    """The smallest bucket holding p99, capped at the model's limit."""
    lengths: tuple[int, ...] = field(default=(), repr=False)
    """The sampled lengths, shortest first."""

    def cut_share(self, max_length: int) -> float:
        """The share of sampled examples longer than `max_length` (truncated by it)."""
        if not self.lengths:
            return 0.0
        return 1 - bisect.bisect_right(self.lengths, max_length) / len(self.lengths)

    def cut_text(self, max_length: int) -> str:
        """'no example is cut', '2.3% of examples are cut', 'under 0.1% ...'."""
        share = self.cut_share(max_length)
        if share == 0:
            return "no example is cut"
        amount = "under 0.1%" if share < 0.001 else f"{share:.1%}"
        return f"{amount} of examples are cut"

    def summary(self, max_length: int | None = None) -> str:
        sampled = f" (sample of {self.sampled:,})" if self.sampled < self.rows else ""
        text = (f"{self.rows:,} rows{sampled}: median {self.p50} tokens, p95 {self.p95}, "
                f"p99 {self.p99}, longest {self.longest}. Suggested max length "
                f"{self.suggested}")
        if max_length is not None:
            text += f"; at {max_length}, {self.cut_text(max_length)}"
        return text + "."


def _rank(ordered: list[int], q: float) -> int:
    """The nearest-rank percentile of a sorted list."""
    return ordered[max(0, math.ceil(round(q * len(ordered), 9)) - 1)]


def suggest(p99: int, limit: int | None) -> int:
    choice = next((b for b in BUCKETS if b >= p99), p99)
    return min(choice, limit) if limit else choice


def model_limit(tokenizer, path: Path | None) -> int | None:
    """Position embeddings from config.json, else the tokenizer's own limit."""
    import json

    if path is not None and (Path(path) / "config.json").exists():
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
            value = config.get(key)
            if isinstance(value, int) and value > 0:
                # RoBERTa-style models reserve two positions for the padding offset.
                return value - 2 if config.get("model_type") in ("roberta", "xlm-roberta",
                                                                  "camembert") else value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else None


def length_stats(lengths: list[int], rows: int, limit: int | None) -> LengthStats:
    ordered = sorted(lengths) or [0]
    p99 = _rank(ordered, 0.99)
    return LengthStats(
        rows=rows, sampled=len(lengths), mean=sum(ordered) / len(ordered),
        p50=_rank(ordered, 0.50), p95=_rank(ordered, 0.95), p99=p99, longest=ordered[-1],
        model_limit=limit, suggested=suggest(p99, limit), lengths=tuple(ordered),
    )


def token_lengths(model: ModelSpec | str, path: Path, columns: list[str], *,
                  encoding: str = "utf-8", sample: int = SAMPLE, seed: int = 0) -> LengthStats:
    """Token counts of `columns` (one text, or a text pair) per row of the file at `path`."""
    from engine.models import load_tokenizer
    from engine.preview import read_columns

    spec = model if isinstance(model, ModelSpec) else ModelSpec(id=model)
    values = read_columns(Path(path), columns, encoding=encoding)
    rows = len(values)
    if rows > sample:
        values = random.Random(seed).sample(values, sample)
    tokenizer, folder = load_tokenizer(spec)
    first = [v[0] for v in values]
    second = [v[1] for v in values] if len(columns) > 1 else None
    encoded = tokenizer(first, second, add_special_tokens=True, truncation=False,
                        return_attention_mask=False, verbose=False)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    return length_stats(lengths, rows, model_limit(tokenizer, folder))
