"""Activation memory counted, not guessed: one forward pass, and what autograd keeps.

Activation memory is, by definition, what autograd saves in the forward pass for the
backward one. So the plan runs the model's forward once (on the meta device, where a
tensor is a shape and costs neither memory nor time) and adds up the bytes of every
tensor autograd saves (`torch.autograd.graph.saved_tensors_hooks`), each storage once
and parameters never (they are weights). Whatever the family (a text encoder, a
decoder LM, an encoder-decoder, a ViT, a torchvision CNN), whichever attention kernel
runs and however its patches or logits are shaped, the count is the model's own;
frozen blocks below the first trainable one save nothing, so they count nothing.

The same pass records the order in which tensors are saved and parameters are last
used, which is the backward pass's order reversed: that replays the backward's memory
curve (activations freed as gradients appear) to find its true peak. Blocks that
gradient checkpointing wraps are tracked, so the checkpointed figure is their inputs
plus the largest block's recompute.

Mixed precision is replayed too: a torch-function mode casts the inputs of the ops
that autocast runs in 16 bits, and of those it runs in float32, as autocast would on
the GPU (meta tensors have no autocast of their own), and counts the 16-bit copies of
weights it keeps apart (the autocast weight cache).

Must not: read weights, allocate for a meta model, or move the caller's random state.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from engine.training.compat import cpu_flash_attention, storage_key

T = torch.Tensor

LOW_PRECISION_OPS = frozenset({
    F.linear, F.bilinear, torch.matmul, T.matmul, T.__matmul__, T.__rmatmul__, torch.mm, T.mm,
    torch.bmm, T.bmm, torch.baddbmm, T.baddbmm, torch.addmm, T.addmm, torch.addbmm,
    torch.einsum, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
    F.conv_transpose3d, F.scaled_dot_product_attention, F.prelu,
})
"""Ops autocast runs in bf16/fp16 (torch's CUDA autocast list, the ones models use)."""

FLOAT32_OPS = frozenset({
    F.layer_norm, F.group_norm, F.softmax, F.log_softmax, T.softmax, T.log_softmax,
    torch.softmax, torch.log_softmax, F.cross_entropy, F.nll_loss, F.mse_loss,
    F.binary_cross_entropy_with_logits, F.kl_div, F.smooth_l1_loss, F.l1_loss,
    torch.rsqrt, torch.exp, torch.log, torch.pow, T.pow, F.softplus, torch.cumsum,
})
"""Ops autocast runs in float32 whatever their inputs (softmax, norms, losses)."""

LOW_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class _MetaPass(TorchFunctionMode):
    """Answers the data-dependent questions a meta tensor cannot (`if mask.all():`), as a
    full batch with no padding would, and replays autocast's casts for a 16-bit run."""

    def __init__(self, low: torch.dtype | None, device_type: str) -> None:
        super().__init__()
        self.low = low
        self.device_type = device_type
        self.cast_params: dict[int, T] = {}
        """Parameter -> its 16-bit copy: autocast casts a weight once per forward."""
        self.cast_keys: set[int] = set()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (T.__bool__, T.item, T.__contains__, T.tolist) and args \
                and isinstance(args[0], T) and args[0].is_meta:
            if func is T.__contains__:
                return False  # "is the pad token in the last column?": no padding
            if func is T.tolist:
                return [1] * args[0].numel() if args[0].dim() else 1
            return True if func is T.__bool__ else 1
        if self.low is not None:
            if func in LOW_PRECISION_OPS:
                args, kwargs = self._cast(args, self.low), self._cast(kwargs, self.low)
            elif func in FLOAT32_OPS:
                args, kwargs = self._cast(args, torch.float32), self._cast(kwargs, torch.float32)
        if func is F.scaled_dot_product_attention and args and args[0].is_meta:
            return self._attention(*args, **kwargs)
        return func(*args, **kwargs)

    def _attention(self, query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                   scale=None, enable_gqa=False):
        """SDPA as the run's device runs it. On meta tensors torch takes the plain math
        path, which keeps the attention matrix (heads x tokens^2) for backward; the GPU
        runs a fused kernel (flash or memory-efficient) that keeps only the output and a
        log-sum-exp per token, and so does the CPU when there is no attention dropout."""
        if self.device_type != "cuda" and dropout_p > 0:
            return F.scaled_dot_product_attention(
                query, key, value, attn_mask=attn_mask, dropout_p=dropout_p,
                is_causal=is_causal, scale=scale, enable_gqa=enable_gqa)
        # The CPU flash kernel's meta version keeps what the fused kernels keep (q, k, v,
        # output, log-sum-exp and the mask): the same bytes the GPU's kernels save. It
        # takes grouped-query attention's fewer key/value heads as they are.
        return cpu_flash_attention(query, key, value, dropout_p, is_causal,
                                   attn_mask=attn_mask, scale=scale)

    def _cast(self, value, dtype):
        if isinstance(value, T):
            if not value.is_floating_point() or value.dtype == dtype:
                return value
            if isinstance(value, nn.Parameter) and value.requires_grad:
                cached = self.cast_params.get(id(value))
                if cached is None or cached.dtype != dtype:
                    cached = self.cast_params[id(value)] = value.to(dtype)
                    self.cast_keys.add(_key(cached))
                return cached
            return value.to(dtype)
        if isinstance(value, (list, tuple)):
            return type(value)(self._cast(v, dtype) for v in value)
        if isinstance(value, dict):
            return {k: self._cast(v, dtype) for k, v in value.items()}
        return value


def meta_answers() -> TorchFunctionMode:
    """A context in which a model's forward runs on meta tensors (its data-dependent
    questions answered as for a full batch), with no counting."""
    return _MetaPass(None, "cpu")


def _key(t: T) -> int:
    """Identity of a tensor's storage, for meta tensors too (engine.training.compat)."""
    return storage_key(t)


@dataclass(frozen=True)
class ActivationProfile:
    """What one forward pass of a batch keeps for the backward pass, and when."""

    saved: int
    """Bytes autograd keeps for backward, parameters and autocast's weight copies aside."""
    cast_weights: int
    """16-bit copies of trainable weights that autocast caches (0 in fp32)."""
    checkpointed: int
    """`saved` with gradient checkpointing: what is saved outside the checkpointed blocks,
    their inputs, and the largest block's activations (recomputed, one block at a time)."""
    logits: int
    """float32 bytes of the model's logits: the loss's gradient buffers are this size."""
    backward_peak: int
    """Peak of activations + gradients made so far + the loss's buffers in the backward
    pass, replayed: the top layers' gradients appear while lower activations are alive."""
    backward_peak_checkpointed: int
    checkpoint_blocks: int
    """Blocks gradient checkpointing would wrap (0: the model cannot checkpoint)."""


def _tensors(value):
    if isinstance(value, T):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


def checkpoint_units(model: nn.Module, fallback: list[str]) -> list[nn.Module]:
    """The modules gradient checkpointing wraps: transformers' checkpointing layers, else
    the freeze plan's blocks (`fallback` names, relative to `model`)."""
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # an older transformers: the blocks the freeze plan found
        GradientCheckpointingLayer = ()  # noqa: N806
    units = [m for m in model.modules() if GradientCheckpointingLayer
             and isinstance(m, GradientCheckpointingLayer)]
    return units or [model.get_submodule(n) for n in fallback]


def profile_activations(model: nn.Module, batch: dict, *, precision: str = "fp32",
                        device_type: str = "cpu", blocks: list[nn.Module] = (),
                        forward=None) -> ActivationProfile:
    """Run one forward of `model` on `batch` (meta or real tensors) with autograd on, and
    count what it saves, as on `device_type` (cpu or cuda). `forward(model, batch)`
    returns the model's output (default: `model(**batch)`); parameters train as their
    `requires_grad` says."""
    params = {_key(p): p for p in model.parameters()}
    order: list[tuple[int, int, int]] = []
    """(bytes, kind, block): kind 0 activation, 1 cast weight, 2 a checkpointed block's input."""
    seen: set[int] = set()
    last_use: dict[int, int] = {}
    """id(parameter) -> how many tensors had been saved when its module last ran."""
    current = [-1]
    block_saved: dict[int, int] = {}
    mode = _MetaPass(LOW_DTYPES.get(precision), device_type)

    def pack(t: T):
        key = _key(t)
        if key in params or key in seen:
            return t
        seen.add(key)
        size = t.untyped_storage().nbytes()
        kind = 1 if key in mode.cast_keys else 0
        order.append((size, kind, current[0]))
        if kind == 0 and current[0] >= 0:
            block_saved[current[0]] = block_saved.get(current[0], 0) + size
        return t

    block_inputs: dict[int, int] = {}
    inputs_seen: set[int] = set()

    def enter(index):
        def hook(module, args, kwargs):
            if current[0] < 0:
                # A checkpointed block keeps its tensor inputs; one passed to every block
                # (a mask, T5's position bias, the encoder's output) is kept once.
                sizes = {_key(t): t.untyped_storage().nbytes() for t in _tensors((args, kwargs))
                         if _key(t) not in params and _key(t) not in inputs_seen}
                inputs_seen.update(sizes)
                block_inputs[index] = sum(sizes.values())
                current[0] = index
        return hook

    def leave(index):
        def hook(module, args, output):
            if current[0] == index:
                current[0] = -1
        return hook

    def used(module, args, output):
        for p in module.parameters(recurse=False):
            last_use[id(p)] = len(order)

    handles = [m.register_forward_hook(used) for m in model.modules()]
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(enter(i), with_kwargs=True))
        handles.append(block.register_forward_hook(leave(i)))
    real = not next(model.parameters()).is_meta
    try:
        with contextlib.ExitStack() as stack:
            if real:  # dropout on real tensors must not move the caller's random state
                stack.enter_context(torch.random.fork_rng(devices=[]))
            stack.enter_context(torch.enable_grad())
            stack.enter_context(torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t))
            stack.enter_context(mode)
            out = forward(model, batch) if forward else model(**batch)
    finally:
        for h in handles:
            h.remove()
    logits = sum(t.numel() * 4 for t in _logits(out))
    grads = {id(p): p.numel() * p.element_size() for p in model.parameters() if p.requires_grad}
    saved = sum(s for s, k, _ in order if k == 0)
    cast = sum(s for s, k, _ in order if k == 1)
    peak = _replay(order, last_use, grads, logits)
    checkpointed, peak_ckpt = _with_checkpointing(order, last_use, block_inputs,
                                                  block_saved, grads, logits)
    return ActivationProfile(saved, cast, checkpointed, logits, peak, peak_ckpt,
                             len(block_inputs) if blocks else 0)


def _with_checkpointing(order, last_use, block_inputs: dict[int, int],
                        block_saved: dict[int, int], grads, logits) -> tuple[int, int]:
    """What the forward keeps, and the step's peak, with gradient checkpointing."""
    # With checkpointing a block keeps only its inputs; its own saves come back one block
    # at a time in the backward pass, so the largest is added once.
    ckpt, position, started = [], [], set()
    for entry in order:
        position.append(len(ckpt))
        size, kind, b = entry
        if b >= 0 and kind != 1:
            if b not in started:
                started.add(b)
                ckpt.append((block_inputs.get(b, 0), 2, b))
            continue
        ckpt.append(entry)
    position.append(len(ckpt))
    ckpt_last_use = {p: position[i] for p, i in last_use.items()}
    largest = max(block_saved.values(), default=0)
    checkpointed = sum(s for s, k, _ in ckpt if k != 1) + largest
    peak_ckpt = _replay(ckpt, ckpt_last_use, grads, logits) + largest
    return checkpointed, peak_ckpt


def _replay(order, last_use, grads, logits) -> int:
    """Peak of the backward pass, replayed from the forward's record.

    Walking back through the forward, a tensor saved at position i is freed once the
    backward passes i, and a parameter's gradient appears when the backward reaches
    its last use. At the very top the loss's two logits-sized float32 buffers (the
    gradients of log-softmax and of the logits) are live beside every activation.
    """
    alive = sum(s for s, _, _ in order)
    by_position: dict[int, int] = {}
    for p, i in last_use.items():
        if p in grads:
            by_position[i] = by_position.get(i, 0) + grads[p]
    peak = alive + 2 * logits
    made = 0
    for i in range(len(order), -1, -1):
        made += by_position.get(i, 0)
        peak = max(peak, alive + made)
        if i > 0:
            alive -= order[i - 1][0]
    return peak


def _logits(out):
    """The logits tensors of a model's output (a transformers output or a (loss, logits)
    tuple): the loss's gradients and the float32 upcast are their size."""
    if isinstance(out, dict):
        return [v for k, v in out.items() if "logits" in k and isinstance(v, T)]
    if isinstance(out, (tuple, list)) and len(out) > 1 and isinstance(out[1], T):
        return [out[1]]
    return []
