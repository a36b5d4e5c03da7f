"""Which parameters learn: a freezing plan computed from the model, then applied.

The plan is pure (names in, names out), so it can be shown before launch and
tested without training. Blocks are found generically, from the module tree
rather than per-model tables: the backbone's stacks of layers are its
outermost `ModuleList`s and `Sequential`s (BERT's `encoder.layer`, GPT-2's
`h`, T5's `encoder.block` and `decoder.block`, torchvision ResNet's
`layer1`..`layer4` read as one stack). Parameters before the first block are
the embeddings, those after it "other" (pooler, final norm), and everything
outside the backbone is the head.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from torch import nn

from engine.core.config import FreezeSpec, LoraSpec
from engine.core.errors import ConfigError

HEAD_MODULES = ("head", "classifier", "qa_outputs", "lm_head", "score", "cls")
"""Top-level module names that are task heads in a model without a backbone attribute."""


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
    stages: tuple[frozenset[str], ...] = ()
    """Gradual unfreezing: the trainable names of each stage (stage 0 is `trainable`)."""
    every_epochs: int = 1
    every_steps: int | None = None

    def group_rows(self, trainable: frozenset[str] | None = None) -> list[tuple[str, int, int]]:
        """(group, trainable params, frozen params) in model order."""
        trainable = self.trainable if trainable is None else trainable
        rows = []
        for g in self.groups:
            t = sum(1 for p in g.params if p in trainable)
            rows.append((g.name, t, len(g.params) - t))
        return rows

    def stage_at(self, epoch: int, step: int) -> int:
        """The gradual stage in force at a point of the run (0 without a schedule)."""
        if len(self.stages) <= 1:
            return 0
        k = step // self.every_steps if self.every_steps else epoch // self.every_epochs
        return min(k, len(self.stages) - 1)

    @property
    def schedule(self) -> tuple[frozenset[str], ...]:
        return self.stages or (self.trainable,)

    @property
    def ever_trainable(self) -> frozenset[str]:
        """Every parameter some stage trains: what the optimizer must hold."""
        return self.schedule[-1]


def backbone_prefix(model: nn.Module) -> str:
    """The parameter-name prefix of the pretrained part of `model`."""
    if isinstance(getattr(model, "backbone", None), nn.Module):
        return "backbone."
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and isinstance(getattr(model, prefix, None), nn.Module):
        return prefix + "."
    return ""


def backbone_of(model: nn.Module) -> nn.Module:
    prefix = backbone_prefix(model)
    return model.get_submodule(prefix.rstrip(".")) if prefix else model


def block_units(backbone: nn.Module) -> list[str]:
    """Qualified names of the backbone's blocks, in model order."""
    lists = {
        name: m for name, m in backbone.named_modules()
        if name and isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m) > 0
        and any(True for _ in m.parameters())
    }
    outer = [n for n in lists if not any(n.startswith(o + ".") for o in lists if o != n)]
    stacks: dict[str, list[str]] = {}
    for name in outer:
        # Lists side by side under one parent are one stack (ResNet's layer1..layer4).
        parent = name.rpartition(".")[0]
        stacks.setdefault(parent, []).extend(
            f"{name}.{child}" for child, sub in lists[name].named_children()
            if any(True for _ in sub.parameters())
        )
    if not stacks:
        return []
    stacks = {parent: _trim(backbone, units) for parent, units in stacks.items()}
    longest = max(len(units) for units in stacks.values())
    # An encoder-decoder has two stacks of similar depth; both are blocks.
    return [u for units in stacks.values() if len(units) * 2 >= longest for u in units]


def _trim(backbone: nn.Module, units: list[str]) -> list[str]:
    """Drop a stem before, and a different layer after, a run of blocks of one kind.

    MobileNet's `features` starts with a plain convolution (its stem, so
    really the embeddings) and ends with a 1x1 one; the blocks are the
    repeated type in between.
    """
    import collections

    kinds = [type(backbone.get_submodule(u)).__name__ for u in units]
    common = collections.Counter(kinds).most_common(1)[0][0]
    first = kinds.index(common)
    last = len(kinds) - 1 - kinds[::-1].index(common)
    return units[first:last + 1] if last > first else units


def layer_groups(model: nn.Module) -> list[LayerGroup]:
    """Group every parameter: embeddings, numbered blocks, other backbone parts, head."""
    prefix = backbone_prefix(model)
    backbone = backbone_of(model)
    units = block_units(backbone)
    unit_index = {u: i for i, u in enumerate(units)}
    names = [n for n, _ in model.named_parameters()]
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    groups: dict[str, list[str]] = {}
    order: list[str] = []
    seen_block = False
    for name in names:
        if prefix and not name.startswith(prefix):
            key = "head"
        elif not prefix and name.split(".", 1)[0] in HEAD_MODULES:
            key = "head"
        else:
            inner = name[len(prefix):]
            index = _unit_of(inner, unit_index)
            if index is not None:
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
    order.sort(key=_group_rank)
    return [LayerGroup(k, tuple(groups[k]), sum(sizes[n] for n in groups[k])) for k in order]


def _unit_of(inner: str, unit_index: dict[str, int]) -> int | None:
    parts = inner.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        index = unit_index.get(".".join(parts[:cut]))
        if index is not None:
            return index
    return None


def _group_rank(key: str) -> tuple[int, int]:
    if key == "embeddings":
        return (0, 0)
    if key.startswith("block."):
        return (1, int(key.split(".")[1]))
    return (2, 0) if key == "other" else (3, 0)


def plan_freeze(model: nn.Module, spec: FreezeSpec) -> FreezePlan:
    """Names of the parameters that train under `spec`, grouped for display."""
    groups = layer_groups(model)
    all_names = [p for g in groups for p in g.params]
    blocks = [g for g in groups if g.name.startswith("block.")]
    by_name = {g.name: set(g.params) for g in groups}
    head = by_name.get("head", set())
    notes: list[str] = []
    stages: list[frozenset[str]] = []
    lora = {n for n in all_names if ".lora_" in n}
    if spec.lora is not None:
        if not lora:
            raise ConfigError("freeze.lora is set but no LoRA adapter is in the model.")
        trainable = lora | head
        notes.append(f"LoRA r={spec.lora.r}: adapters and the head train; the backbone's own "
                     "weights stay frozen")
    elif spec.policy == "full":
        trainable = set(all_names)
    elif spec.policy == "head_only":
        trainable = set(head)
    elif spec.policy == "freeze_embeddings":
        trainable = set(all_names) - by_name.get("embeddings", set())
    elif spec.policy == "freeze_first_n":
        if spec.n > len(blocks):
            raise ConfigError(
                f"freeze.n is {spec.n} but the model has only {len(blocks)} blocks; "
                f"use at most {len(blocks)} (or head_only)."
            )
        frozen = by_name.get("embeddings", set()) | {p for g in blocks[: spec.n] for p in g.params}
        trainable = set(all_names) - frozen
    elif spec.policy == "modules":
        frozen = set()
        for pattern in spec.patterns:
            matched = {n for n in all_names if fnmatch.fnmatch(n, pattern)
                       or fnmatch.fnmatch(n, f"*.{pattern}")}
            if not matched:
                raise ConfigError(
                    f"freeze.patterns {pattern!r} matches no parameter; names look like "
                    f"{all_names[0]} or {blocks[0].params[0] if blocks else all_names[-1]}."
                )
            frozen |= matched
        trainable = set(all_names) - frozen
    else:  # gradual: the head (and the parts above the blocks) first, then a block at a time
        opened = set(head) | by_name.get("other", set())
        stages.append(frozenset(opened))
        for g in reversed(blocks):
            opened |= set(g.params)
            stages.append(frozenset(opened))
        if by_name.get("embeddings"):
            opened |= by_name["embeddings"]
            stages.append(frozenset(opened))
        trainable = set(stages[0])
        unit = f"{spec.every_steps} steps" if spec.every_steps else f"{spec.every_epochs} epoch(s)"
        notes.append(f"Gradual: {len(stages)} stages, one more block group every {unit}")
    if not trainable:
        if spec.policy in ("head_only", "gradual") and not head:
            raise ConfigError(
                f"freeze.policy {spec.policy} leaves nothing to train: this model's head has no "
                "weights of its own (its output layer is tied to the embeddings); use "
                "freeze_first_n or LoRA instead."
            )
        raise ConfigError("This freezing plan leaves nothing to train; freeze fewer modules.")
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    t_count = sum(sizes[n] for n in trainable)
    return FreezePlan(
        trainable=frozenset(trainable), groups=tuple(groups), trainable_count=t_count,
        frozen_count=sum(sizes.values()) - t_count, notes=tuple(notes), stages=tuple(stages),
        every_epochs=spec.every_epochs, every_steps=spec.every_steps,
    )


def apply_freeze(model: nn.Module, plan: FreezePlan, stage: int = 0) -> None:
    trainable = plan.schedule[stage]
    for name, p in model.named_parameters():
        p.requires_grad_(name in trainable)


# -- LoRA ------------------------------------------------------------------


def lora_targets(model: nn.Module, spec: LoraSpec) -> list[str]:
    """The module names LoRA adapts: the config's, else peft's choice for the architecture."""
    if spec.target_modules:
        return list(spec.target_modules)
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as known

    model_type = getattr(getattr(backbone_of(model), "config", None), "model_type", None)
    if model_type in known:
        return list(known[model_type])
    # Unknown architecture: the attention projections by their usual names.
    linear_names = {n.rsplit(".", 1)[-1] for n, m in backbone_of(model).named_modules()
                    if isinstance(m, nn.Linear)}
    guess = [n for n in ("query", "value", "q_proj", "v_proj", "q", "v", "c_attn", "qkv")
             if n in linear_names]
    if not linear_names:
        raise ConfigError(f"{model_type or type(model).__name__} has no linear layers for LoRA "
                          "to adapt; unset freeze.lora and choose a freeze.policy instead.")
    if not guess:
        raise ConfigError(
            f"Cannot choose LoRA target modules for {model_type or type(model).__name__}; set "
            f"freeze.lora.target_modules (linear layers here: {', '.join(sorted(linear_names))})."
        )
    return guess


def inject_lora(model: nn.Module, spec: LoraSpec) -> list[str]:
    """Put LoRA adapters into the backbone's target layers, in place; returns the targets."""
    from peft import LoraConfig, inject_adapter_in_model

    targets = lora_targets(model, spec)
    backbone = backbone_of(model)
    config = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout,
                        target_modules=targets)
    try:
        inject_adapter_in_model(config, backbone)
    except ValueError as exc:
        raise ConfigError(f"freeze.lora.target_modules {targets} do not fit this model: "
                          f"{str(exc).splitlines()[0]}") from None
    return targets


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base layer and drop the adapters (for export)."""
    from peft.tuners.lora import LoraLayer

    for name, module in list(model.named_modules()):
        if isinstance(module, LoraLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.get_base_layer())
    return model
