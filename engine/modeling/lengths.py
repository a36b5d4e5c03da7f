"""How long a data file's examples are in a model's tokens, and what max_length fits them.

A max_length set too low silently cuts examples; one set too high costs
memory and time on every padded batch. `token_lengths` tokenises a seeded
sample of the file with the model's own tokenizer and suggests the smallest
common length that holds 99% of examples whole, capped at what the model
accepts. Loads transformers (not torch); the TUI calls it from a thread.

A max_length beyond the model's position embeddings would crash the run at
its first long batch; `effective_max_length` is the one check of it, which
`hubtune plan`, the new-run form and the training loop all use: the length
is clamped to the model's limit, with a notice saying so. It reads only
local files (the config.json of a local, cached or packaged model).
"""

from __future__ import annotations

import bisect
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.config import ModelSpec
from engine.data.text_cells import cut_texts

SAMPLE = 5000
"""Rows tokenised at most: percentiles of a 5,000-row sample are within a token or two."""
MAX_COUNTED = 8192
"""Tokens a preview counts of one cell at most (a cell is cut first): longer than any
max_length a model here takes, so the counts still say what would be cut."""
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


RELATIVE_POSITIONS = ("t5", "mt5", "umt5", "longt5", "switch_transformers")
"""Families whose positions are relative: a config's n_positions is no hard limit."""
PADDING_OFFSET = ("roberta", "xlm-roberta", "camembert")
"""RoBERTa-style models reserve two positions for the padding offset."""


def position_limit(config: dict) -> int | None:
    """The most tokens a model's position embeddings take, from its config.json."""
    kind = config.get("model_type")
    if kind in RELATIVE_POSITIONS:
        return None
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value - 2 if kind in PADDING_OFFSET and value > 2 else value
    return None


def read_model_config(path: Path | None) -> dict | None:
    """A local model folder's config.json, or None where there is none to read."""
    import json

    file = Path(path) / "config.json" if path is not None else None
    if file is None or not file.is_file():
        return None
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def model_limit(tokenizer, path: Path | None) -> int | None:
    """Position embeddings from config.json, else the tokenizer's own limit."""
    config = read_model_config(path)
    limit = position_limit(config) if config is not None else None
    if limit is not None:
        return limit
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 1_000_000 else None


@dataclass(frozen=True)
class LengthLimit:
    """A configured token length held against the model's positions."""

    key: str
    """The config key: data.max_length, or data.max_target_length for seq2seq."""
    requested: int
    used: int
    """What the run uses: the request, clamped to the model's limit."""
    limit: int | None
    """The model's positions, when its config.json says."""
    model: str

    @property
    def notice(self) -> str | None:
        """'data.max_length 1024 is beyond the 512 positions of MODEL; using 512', or None."""
        if self.used == self.requested:
            return None
        return (f"{self.key} {self.requested} is beyond the {self.limit} positions of "
                f"{self.model}; using {self.used}")


def effective_max_length(cfg, model_path: Path | None = None,
                         key: str = "data.max_length") -> LengthLimit:
    """`cfg`'s max_length (or max_target_length), clamped to the model's positions.

    `model_path` is the model's local folder when the caller has it; else the
    model is looked up locally only (a folder, `pkg:`, `run:` or the hub
    cache), never downloaded. A model whose limit cannot be read keeps the
    requested length.
    """
    requested = getattr(cfg.data, key.removeprefix("data."))
    if model_path is None:
        model_path = _local_model_path(cfg)
    config = read_model_config(model_path)
    limit = position_limit(config) if config is not None else None
    used = min(requested, limit) if limit else requested
    return LengthLimit(key, requested, used, limit, cfg.model.id)


def fit_lengths(cfg, model_path: Path | None = None,
                keys: tuple[str, ...] = ("data.max_length",)):
    """(cfg with its token lengths `keys` clamped to the model's positions, the clamps
    made); `keys` are the task adapter's `length_keys` (a seq2seq run's decoder
    positions bound its targets too).

    The training loop runs on the returned config; each clamp is a notice.
    """
    import dataclasses

    limits = [effective_max_length(cfg, model_path, key) for key in keys]
    clamped = tuple(x for x in limits if x.notice)
    if clamped:
        changes = {x.key.removeprefix("data."): x.used for x in clamped}
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **changes))
    return cfg, clamped


def _local_model_path(cfg) -> Path | None:
    """The model's local folder without any download, or None (not cached, torchvision)."""
    from engine.core.errors import HubtuneError

    if cfg.model.id.startswith("torchvision:"):
        return None
    from engine.modeling.loading import local_files_only, resolve_model_path

    try:
        with local_files_only():
            return resolve_model_path(cfg.model)
    except HubtuneError:
        return None


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
    from engine.data.reader import read_columns
    from engine.modeling.loading import load_tokenizer

    spec = model if isinstance(model, ModelSpec) else ModelSpec(id=model)
    values = read_columns(Path(path), columns, encoding=encoding)
    rows = len(values)
    if rows > sample:
        values = random.Random(seed).sample(values, sample)
    tokenizer, folder = load_tokenizer(spec)
    limit = model_limit(tokenizer, folder)
    # Counted untruncated, but a huge cell is cut first to what the longest input the model
    # takes could need (engine.data.text_cells): its count still shows it is too long.
    counted = min(limit or MAX_COUNTED, MAX_COUNTED)
    first = cut_texts([v[0] for v in values], counted)
    second = cut_texts([v[1] for v in values], counted) if len(columns) > 1 else None
    encoded = tokenizer(first, second, add_special_tokens=True, truncation=False,
                        return_attention_mask=False, verbose=False)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    return length_stats(lengths, rows, limit)
