"""Which parameters learn: a freezing plan computed from the model, then applied.

The plan is pure (names in, names out), so it can be shown before launch and
tested without training. Blocks are found generically: the longest
`nn.ModuleList` in the backbone is its stack of layers (BERT's
`encoder.layer`, GPT-2's `h`, ViT's `encoder.layer`, ...), and parameters
outside it that come before it are the embeddings.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from torch import nn

from engine.config import FreezeSpec
from engine.errors import ConfigError


@dataclass(frozen=True)
class LayerGroup:
    name: str
    """embeddings, block.0 ... block.N-1, other (pooler, final norm) or head."""
    params: tuple[str, ...]
    count: int


@dataclass(frozen=True)
class FreezePlan:
    trainable: frozenset[str]
    groups: tuple[LayerGroup, ...]
    trainable_count: int
    frozen_count: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def group_rows(self) -> list[tuple[str, int, int]]:
        """(group, trainable params, frozen params) in model order."""
        rows = []
        for g in self.groups:
            t = sum(1 for p in g.params if p in self.trainable)
            rows.append((g.name, t, len(g.params) - t))
        return rows


def block_list(backbone: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The backbone's stack of layers: its longest ModuleList."""
    best = None
    for name, module in backbone.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if best is None or len(module) > len(best[1]):
                best = (name, module)
    return best


def layer_groups(model: nn.Module, backbone_prefix: str = "backbone.") -> list[LayerGroup]:
    """Group every parameter: embeddings, numbered blocks, other backbone parts, head."""
    try:
        backbone = model.get_submodule(backbone_prefix.rstrip(".")) if backbone_prefix else model
    except AttributeError:
        backbone = None  # a head on its own (the cached-feature path): all of it is "head"
    stack = block_list(backbone) if backbone is not None else None
    names = [n for n, _ in model.named_parameters()]
    sizes = dict((n, p.numel()) for n, p in model.named_parameters())
    groups: dict[str, list[str]] = {}
    order: list[str] = []
    seen_block = False
    for name in names:
        if not name.startswith(backbone_prefix):
            key = "head"
        else:
            inner = name[len(backbone_prefix):]
            if stack is not None and inner.startswith(stack[0] + "."):
                index = inner[len(stack[0]) + 1:].split(".", 1)[0]
                key = f"block.{index}"
                seen_block = True
            elif not seen_block:
                key = "embeddings"
            else:
                key = "other"
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(name)
    return [LayerGroup(k, tuple(groups[k]), sum(sizes[n] for n in groups[k])) for k in order]


def plan_freeze(model: nn.Module, spec: FreezeSpec) -> FreezePlan:
    """Names of the parameters that train under `spec`, grouped for display."""
    groups = layer_groups(model)
    all_names = [p for g in groups for p in g.params]
    blocks = [g for g in groups if g.name.startswith("block.")]
    head = {p for g in groups if g.name == "head" for p in g.params}
    notes: list[str] = []
    if spec.lora is not None:
        raise ConfigError("freeze.lora is not available yet; remove it or use freeze.policy.")
    if spec.policy == "full":
        trainable = set(all_names)
    elif spec.policy == "head_only":
        trainable = set(head)
    elif spec.policy == "freeze_embeddings":
        emb = {p for g in groups if g.name == "embeddings" for p in g.params}
        trainable = set(all_names) - emb
    elif spec.policy == "freeze_first_n":
        if spec.n > len(blocks):
            raise ConfigError(
                f"freeze.n is {spec.n} but the model has only {len(blocks)} blocks; "
                f"use at most {len(blocks)} (or head_only)."
            )
        frozen = {p for g in groups if g.name == "embeddings" for p in g.params}
        frozen |= {p for g in blocks[: spec.n] for p in g.params}
        trainable = set(all_names) - frozen
    elif spec.policy == "modules":
        frozen = set()
        for pattern in spec.patterns:
            matched = {n for n in all_names if fnmatch.fnmatch(n, pattern)
                       or fnmatch.fnmatch(n, f"backbone.{pattern}")}
            if not matched:
                raise ConfigError(
                    f"freeze.patterns {pattern!r} matches no parameter; names look like "
                    f"{all_names[0]} or {blocks[0].params[0] if blocks else all_names[-1]}."
                )
            frozen |= matched
        trainable = set(all_names) - frozen
    else:  # gradual
        raise ConfigError("freeze.policy gradual is not available yet; use freeze_first_n.")
    if not trainable:
        raise ConfigError("This freezing plan leaves nothing to train; freeze fewer modules.")
    sizes = dict((n, p.numel()) for n, p in model.named_parameters())
    t_count = sum(sizes[n] for n in trainable)
    return FreezePlan(
        trainable=frozenset(trainable), groups=tuple(groups), trainable_count=t_count,
        frozen_count=sum(sizes.values()) - t_count, notes=tuple(notes),
    )


def apply_freeze(model: nn.Module, plan: FreezePlan) -> None:
    for name, p in model.named_parameters():
        p.requires_grad_(name in plan.trainable)
