"""Peak memory of one training step: the plan's estimate, term by term.

Weights, gradients and AdamW state are exact counts from the parameters.
Activations, the autocast weight cache and the loss's gradient buffers are
counted from one forward pass of the model itself (`engine.training.activations`),
whatever its family, attention kernel, patch grid or vocabulary. Fixed costs are
stated constants: the CUDA context, and data parallel's gradient buckets.

The terms add up to more than is ever live at once: in the backward pass the
gradients of the lower layers appear only after the activations above them are
freed. `overlap` is that difference, so the total is the replayed peak.
Must not: change the model it is given (its `requires_grad` flags are restored).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from engine.modeling.freeze import FreezePlan
from engine.training.compat import config_attention

BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}

CUDA_CONTEXT = 512 * 2**20
"""What a CUDA process holds before its first tensor (driver context, loaded kernels,
cuBLAS and cuDNN handles): about half a GiB with CUDA 12's lazy loading. torch's own
allocator statistics never include it, but it is memory the GPU no longer has."""

DDP_BUCKET_VIEW = True
"""Data parallel keeps the gradients as views into its buckets (engine.training.setup's
ddp_settings): one copy of them, made when the model is wrapped and kept for the run."""

MARGIN_COUNTED = 0.15
"""Activations counted from a forward pass, float32: what is left is the allocator's
rounding and short-lived buffers inside single ops (the CPU tests hold it to 25%)."""
MARGIN_MIXED = 0.20
"""Counted, with autocast's casts replayed (the real kernels may keep a copy more or less)."""
MARGIN_CUDA = 0.05
"""Added on a GPU: the caching allocator's fragmentation above what it reports allocated."""
MARGIN_GUESSED = 0.40
"""Activations from the per-block formula, when the model would not run on the meta device."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of each part of a training step's peak; `total` is the peak itself."""

    weights: int
    """Every parameter, in float32 (mixed precision keeps float32 masters)."""
    gradients: int
    """One per trainable parameter, float32."""
    optimizer: int
    """AdamW's two float32 moments per trainable parameter."""
    activations: int
    """What autograd keeps for the backward pass (with checkpointing when the run uses it)."""
    activations_checkpointed: int
    """The same with gradient checkpointing: block inputs, and one block's recompute."""
    tied_gradients: int = 0
    """Two more copies of the largest trainable weight two layers share (a language model's
    tied input and output embeddings): at the end of the backward pass the input layer's
    gradient is made whole and then summed with the one already held, into a new tensor."""
    logits: int = 0
    """The loss's float32 gradient buffers at the top of the backward pass (two logits' worth;
    large for language models, whose logits span the vocabulary)."""
    autocast_cache: int = 0
    """16-bit copies of the trainable weights that autocast keeps through the step."""
    ddp_buckets: int = 0
    """Data parallel's all-reduce buckets beyond the gradients (0 while the gradients are
    views into them, hubtune's setting; those gradients then live through every step)."""
    features: int = 0
    """Cached frozen-backbone features of the examples read (head_only), on the device."""
    cuda_context: int = 0
    """The CUDA context (0 on the CPU)."""
    overlap: int = 0
    """Counted above but never live at once (gradients made after activations are freed)."""
    margin: float = MARGIN_GUESSED
    """The estimate's relative margin of error: the peak is total x (1 +- margin)."""
    counted: bool = False
    """Activations counted from a forward pass (False: estimated from the architecture)."""
    gradient_checkpointing: bool = False

    @property
    def total(self) -> int:
        return (self.weights + self.gradients + self.tied_gradients + self.optimizer
                + self.activations + self.logits + self.autocast_cache + self.ddp_buckets
                + self.features + self.cuda_context - self.overlap)

    TERMS = ("weights", "gradients", "tied_gradients", "optimizer", "activations", "logits",
             "autocast_cache", "ddp_buckets", "features", "cuda_context")
    """The additive terms, in the order plans show them (then `overlap` is taken off)."""

    def as_dict(self) -> dict[str, int]:
        """Every term in bytes, the total and its range (`hubtune plan --json`'s
        memory_bytes: weights..activations_checkpointed and total are the contract)."""
        out = {k: getattr(self, k) for k in self.TERMS}
        out.update(activations_checkpointed=self.activations_checkpointed,
                   overlap=self.overlap, total=self.total,
                   total_low=int(self.total * (1 - self.margin)),
                   total_high=int(self.total * (1 + self.margin)))
        return out


def estimate_memory(model: nn.Module, plan: FreezePlan, *, batch_size: int, seq_len: int,
                    precision: str = "fp32", batch: dict | None = None, forward=None,
                    gradient_checkpointing: bool = False, device_type: str = "cpu",
                    processes: int = 1, features: int = 0) -> MemoryEstimate:
    """Peak memory in bytes of one optimizer step of `model` under `plan`.

    `batch` is what the model is called with (meta tensors for a meta model); without
    one, a text batch of `batch_size` x `seq_len` tokens. `forward(model, batch)`
    replaces `model(**batch)`.
    """
    from engine.training.activations import checkpoint_units, profile_activations

    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    trainable = [p for n, p in model.named_parameters() if n in plan.trainable]
    gradients = sum(p.numel() * p.element_size() for p in trainable)
    optimizer = sum(p.numel() * 8 for p in trainable)
    if batch is None:
        device = next(model.parameters()).device
        ids = torch.zeros(batch_size, seq_len, dtype=torch.long, device=device)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                 "labels": torch.zeros(batch_size, dtype=torch.long, device=device)}
    tied = tied_gradient_bytes(model, plan)
    fixed = dict(
        weights=weights, gradients=gradients, tied_gradients=tied, optimizer=optimizer,
        ddp_buckets=gradients if processes > 1 and not DDP_BUCKET_VIEW else 0,
        features=features,
        cuda_context=CUDA_CONTEXT if device_type == "cuda" else 0,
        gradient_checkpointing=gradient_checkpointing)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        for n, p in model.named_parameters():
            p.requires_grad_(n in plan.trainable)
        blocks = checkpoint_units(model, _block_names(model, plan))
        profile = profile_activations(model, batch, precision=precision, blocks=blocks,
                                      device_type=device_type, forward=forward)
    except Exception:  # noqa: BLE001  any model code may fail on meta tensors: estimate
        return _guessed(model, plan, batch_size, seq_len, precision, fixed)
    finally:
        for n, p in model.named_parameters():
            p.requires_grad_(flags[n])
    saved = profile.checkpointed if gradient_checkpointing else profile.saved
    backward = (profile.backward_peak_checkpointed if gradient_checkpointing
                else profile.backward_peak)
    # The step's moving part: the backward pass's replayed peak, or every gradient at
    # once when the optimizer steps (activations are gone by then). Under data parallel
    # the gradients are allocated before the step begins, so nothing overlaps them.
    moving = max(backward, gradients + tied)
    if processes > 1:
        moving = gradients + tied + saved + 2 * profile.logits + profile.cast_weights
    parts = dict(fixed, activations=saved, activations_checkpointed=profile.checkpointed,
                 logits=2 * profile.logits, autocast_cache=profile.cast_weights)
    listed = (gradients + tied + saved + parts["logits"] + profile.cast_weights)
    margin = MARGIN_COUNTED if precision == "fp32" else MARGIN_MIXED
    if device_type == "cuda":
        margin += MARGIN_CUDA
    return MemoryEstimate(**parts, overlap=max(0, listed - moving), margin=margin, counted=True)


def tied_gradient_bytes(model: nn.Module, plan: FreezePlan) -> int:
    """Two copies of the largest trainable parameter that more than one layer holds (0 when
    none does): measured on the CPU, GPT-2's tied embeddings peak at the end of the
    backward pass with the embedding's dense gradient and the out-of-place sum of the two
    gradients both live beside every other gradient."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    shared = [p.numel() * p.element_size() for p in model.parameters()
              if len(names[id(p)]) > 1 and any(n in plan.trainable for n in names[id(p)])]
    return 2 * max(shared, default=0)


def _block_names(model: nn.Module, plan: FreezePlan) -> list[str]:
    """Module names of the freeze plan's blocks (the common prefix of each block's
    parameter names)."""
    import os

    names = []
    for g in plan.groups:
        if g.name.startswith("block.") and g.params:
            prefix = os.path.commonprefix([p.rsplit(".", 1)[0] + "." for p in g.params])
            prefix = prefix[: prefix.rfind(".")] if "." in prefix else ""
            try:
                model.get_submodule(prefix)
            except AttributeError:
                continue
            names.append(prefix)
    return names


def _guessed(model, plan, batch_size, seq_len, precision, fixed) -> MemoryEstimate:
    """The per-block formula, for a model whose forward will not run on meta tensors."""
    from engine.modeling.freeze import backbone_of

    config = getattr(backbone_of(model), "config", None)
    hidden = getattr(config, "hidden_size", 0) or 0
    heads = getattr(config, "num_attention_heads", 1) or 1
    eager = config_attention(config, default="eager") == "eager"
    blocks = [g for g in plan.groups if g.name.startswith("block.")]
    first = next((i for i, g in enumerate(blocks)
                  if any(p in plan.trainable for p in g.params)), len(blocks))
    if any(p in plan.trainable for g in plan.groups if g.name == "embeddings" for p in g.params):
        first = 0
    active = len(blocks) - first
    scale = BYTES.get(precision, 4) / 2
    # Per transformer block about 34 bytes per token and width unit are kept at 16 bits;
    # eager attention adds 5 per head and token pair (scores, softmax, dropout mask).
    per_block = int((34 * seq_len * batch_size * hidden
                     + (5 * heads * seq_len * seq_len * batch_size if eager else 0)) * scale)
    activations = active * per_block
    checkpointed = (active * batch_size * seq_len * hidden * BYTES.get(precision, 4)
                    + (per_block if active else 0))
    used = checkpointed if fixed["gradient_checkpointing"] else activations
    return MemoryEstimate(**fixed, activations=used, activations_checkpointed=checkpointed,
                          margin=MARGIN_GUESSED, counted=False)
