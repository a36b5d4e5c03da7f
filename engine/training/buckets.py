"""Text batches shaped by length buckets: token-budget batches and static shapes.

Short texts leave a large GPU launch-bound: a batch of 32 tweets is a few thousand
tokens, and the step's time goes on launching kernels rather than computing.
`TokenBudgetBatches` fills each batch up to `train.max_tokens_per_batch` padded
tokens instead, grouping examples by the length buckets `hubtune plan` suggests
(engine.modeling.lengths.BUCKETS), so every full batch of a bucket has the same
shape, (budget // bucket, bucket).

`PadToBucket` pads a batch's token fields up to its bucket, so a compiled model
(`train.compile_shapes: static`) sees a handful of shapes and compiles one graph
for each, instead of tracing symbolic lengths. `recompile_budget` says how many
graphs that is, gradual unfreezing included (each stage changes which parameters
need gradients, which the compiled graphs guard on).
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator, Sequence

import torch

IGNORED_LABEL = -100
"""What the losses skip: padded label positions."""


def length_buckets(max_length: int) -> tuple[int, ...]:
    """The bucket lengths up to `max_length`, which is always the last."""
    from engine.modeling.lengths import BUCKETS

    return (*(b for b in BUCKETS if b < max_length), max_length)


def bucket_of(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds `length` (the last one for anything longer)."""
    return buckets[min(bisect.bisect_left(buckets, length), len(buckets) - 1)]


class TokenBudgetBatches:
    """Seeded random batches of at most `budget` padded tokens, one bucket per batch.

    Each epoch deals every example into its length bucket (in a seeded random
    order), cuts each bucket into batches of `budget // bucket` rows (at least one)
    and shuffles the batches, so the order is a pure function of (seed, epoch), as
    `LengthGroupedBatches`' is, and a resumed run sees the same batches. Like it, it
    has no `batch_size` attribute: accelerate would take the batches for equal ones.
    """

    def __init__(self, lengths: Sequence[int], budget: int, max_length: int, seed: int) -> None:
        self.buckets = length_buckets(max_length)
        self.of = [bucket_of(n, self.buckets) for n in lengths]
        self.budget, self.seed = budget, seed
        self.epoch = 0

    def rows(self, bucket: int) -> int:
        return max(1, self.budget // bucket)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        order = list(range(len(self.of)))
        rng.shuffle(order)
        groups: dict[int, list[int]] = {}
        for i in order:
            groups.setdefault(self.of[i], []).append(i)
        out = []
        for bucket in sorted(groups):
            members, size = groups[bucket], self.rows(bucket)
            out += [members[i:i + size] for i in range(0, len(members), size)]
        rng.shuffle(out)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        counts: dict[int, int] = {}
        for bucket in self.of:
            counts[bucket] = counts.get(bucket, 0) + 1
        return sum(-(-n // self.rows(b)) for b, n in counts.items())

    def shapes(self) -> int:
        """Distinct batch shapes an epoch can have: a full and a last batch per bucket."""
        return 2 * len(set(self.of))


def budget_batches(cfg, lengths: Sequence[int]) -> TokenBudgetBatches | None:
    """Token-budget batches when train.max_tokens_per_batch asks for them, else None."""
    budget = cfg.train.max_tokens_per_batch
    if budget is None:
        return None
    return TokenBudgetBatches(lengths, budget, cfg.data.max_length, cfg.train.seed)


class PadToBucket:
    """Pads the token fields of a collator's batches up to the batch's length bucket.

    Fields as wide as `input_ids` are padded: `input_ids` with the pad id, `labels`
    with the ignored label, anything else (attention mask, token types) with 0.
    Padding is masked out of attention and loss, so only the shape changes.
    """

    def __init__(self, collate, pad_id: int, max_length: int) -> None:
        self.collate, self.pad_id = collate, pad_id
        self.buckets = length_buckets(max_length)

    def __getattr__(self, name):  # set_epoch and the like reach the wrapped collator
        if name == "collate":
            raise AttributeError(name)
        return getattr(self.collate, name)

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = self.collate(indices)
        ids = batch.get("input_ids")
        if ids is None or ids.dim() != 2:
            return batch
        width = ids.shape[1]
        target = bucket_of(width, self.buckets)
        if target <= width:
            return batch
        fills = {"input_ids": self.pad_id, "labels": IGNORED_LABEL}
        for key, value in batch.items():
            if torch.is_tensor(value) and value.dim() == 2 and value.shape[1] == width:
                batch[key] = torch.nn.functional.pad(value, (0, target - width),
                                                     value=fills.get(key, 0))
        return batch


def recompile_budget(shapes: int, stages: int) -> int:
    """Graphs a compiled run may need: each shape at each unfreezing stage, and a few
    more for the recompiles torch makes on its own (a guard on a changed attribute)."""
    return shapes * max(1, stages) + 4


def raise_recompile_limit(graphs: int) -> int:
    """Let torch.compile keep `graphs` graphs of the model before it gives up on new
    shapes and runs them eagerly (its default, 8, is fewer than a bucketed run with
    gradual unfreezing needs). Returns the limit in force. The setting lives in
    torch._dynamo.config, torch's documented place for it (engine.training.compat)."""
    from engine.training.compat import dynamo_config

    settings = dynamo_config()
    limit = max(settings.recompile_limit, graphs)
    settings.recompile_limit = limit
    return limit


def compile_model(model, cfg, sampler, bucketed: PadToBucket | None, stages: int):
    """(model compiled as train.compile and train.compile_shapes ask, "off" | "dynamic" |
    "static"). Static shapes: every batch padded to a bucket (text), or one size anyway
    (images, cached features), with the recompile limit raised to the graphs needed."""
    if not cfg.train.compile:
        return model, "off"
    static = cfg.train.compile_shapes == "static"
    # Static: a full and a last batch per bucket (images and cached features come at one
    # size). Dynamic: one symbolic graph, and another where a size-1 batch specialises.
    shapes = 2
    if static and hasattr(sampler, "shapes"):
        shapes = sampler.shapes()
    elif static and bucketed is not None:
        shapes = 2 * len(bucketed.buckets)
    raise_recompile_limit(recompile_budget(shapes, stages))
    return torch.compile(model, dynamic=not static), "static" if static else "dynamic"
