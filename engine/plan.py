"""The pre-launch plan: what trains, what is frozen, and how much memory it needs.

Weights, gradients and optimizer state are counted exactly from the model's
parameters; activations are estimated for a transformer block from batch
size, sequence length, width and heads (the usual per-layer count of saved
tensors), and only for blocks that sit above the first trainable one,
since nothing below it keeps activations for backward.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from engine.freeze import FreezePlan

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass(frozen=True)
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    activations_checkpointed: int
    """With gradient checkpointing: one saved input per block plus one block's worth."""

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def as_dict(self) -> dict[str, int]:
        return {"weights": self.weights, "gradients": self.gradients,
                "optimizer": self.optimizer, "activations": self.activations,
                "activations_checkpointed": self.activations_checkpointed,
                "total": self.total}


def estimate_memory(model: nn.Module, plan: FreezePlan, *, batch_size: int, seq_len: int,
                    precision: str = "fp32") -> MemoryEstimate:
    """Peak training memory in bytes for one optimizer step of `model` under `plan`."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = [p for n, p in model.named_parameters() if n in plan.trainable]
    # Gradients match the parameters' dtype; AdamW keeps two fp32 moments per parameter.
    gradients = sum(p.numel() * p.element_size() for p in trainable)
    optimizer = sum(p.numel() * 8 for p in trainable)
    config = getattr(getattr(model, "backbone", model), "config", None)
    hidden = getattr(config, "hidden_size", 0) or 0
    heads = getattr(config, "num_attention_heads", 1) or 1
    blocks = [g for g in plan.groups if g.name.startswith("block.")]
    first_trainable = next((i for i, g in enumerate(blocks)
                            if any(p in plan.trainable for p in g.params)), len(blocks))
    if any(p in plan.trainable for g in plan.groups if g.name == "embeddings" for p in g.params):
        first_trainable = 0
    active = len(blocks) - first_trainable
    per_block = _block_activation_bytes(batch_size, seq_len, hidden, heads, precision)
    activations = active * per_block
    checkpointed = (active * batch_size * seq_len * hidden * BYTES.get(precision, 4)
                    + (per_block if active else 0))
    return MemoryEstimate(weights, gradients, optimizer, activations, checkpointed)


def _block_activation_bytes(b: int, s: int, h: int, a: int, precision: str) -> int:
    # Per transformer block, the tensors kept for backward come to about
    # s*b*h*34 bytes plus 5*a*s^2*b for attention scores, at 16-bit; scale by width.
    scale = BYTES.get(precision, 4) / 2
    return int((34 * s * b * h + 5 * a * s * s * b) * scale)
