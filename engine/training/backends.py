"""Process-wide kernel settings a run asks for, and the per-model speed settings on a GPU.

Determinism (`train.deterministic`), TF32 (`train.tf32`), cudnn autotuning and
channels-last memory for convolutional networks, and which attention kernel a
transformers model dispatches to. Each function says whether it turned its
setting on, so the run can record what was in force (`SpeedSettings`), and a
slow or surprising GPU run can be explained from its record.

The torch switches here are global to the process. A worker process trains one
run, so a run's settings are its own; a process that trains several runs one
after another (the tests, the benchmarks) gets each run's settings set afresh,
both ways. Nothing here touches CUDA when the run is on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch
from torch import nn

CUBLAS_WORKSPACE = ":4096:8"
"""What cuBLAS needs to pick reproducible reductions (NVIDIA's documented setting)."""


@dataclass(frozen=True)
class SpeedSettings:
    """What a run trained with, beyond its config's precision: recorded as an event and
    handed to the bench (`RunPrepared.speed`)."""

    device: str
    """cpu or cuda."""
    tf32: bool = False
    """fp32 matmuls and convolutions on TF32 tensor cores."""
    deterministic: bool = False
    """Deterministic kernels only."""
    channels_last: bool = False
    """A convolutional network's weights and images in NHWC memory order."""
    cudnn_benchmark: bool = False
    """cudnn tries its convolution algorithms once per shape and keeps the fastest."""
    attention: str | None = None
    """The attention kernel transformers dispatches to (sdpa, eager, flash_attention_2);
    None for a model without one (torchvision)."""
    fused_optimizer: bool = False
    """AdamW's fused kernel (every parameter in one launch)."""
    data_workers: int = 0
    """Processes decoding batches beside training."""
    persistent_workers: bool = False
    """The data workers live across epochs instead of starting again at each."""
    pin_memory: bool = False
    """Batches in page-locked memory, copied to the GPU without blocking."""
    max_tokens_per_batch: int | None = None
    """Token-budget batches (None: batch_size rows)."""
    compile: str = "off"
    """off, dynamic, or static (batches padded to length buckets)."""

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for the run's events: the levers that are on."""
        on = [name for name in ("tf32", "deterministic", "channels_last", "cudnn_benchmark",
                                "fused_optimizer", "pin_memory", "persistent_workers")
              if getattr(self, name)]
        if self.attention:
            on.append(f"attention={self.attention}")
        if self.data_workers:
            on.append(f"data_workers={self.data_workers}")
        if self.max_tokens_per_batch:
            on.append(f"max_tokens_per_batch={self.max_tokens_per_batch}")
        if self.compile != "off":
            on.append(f"compile={self.compile}")
        return f"Speed settings on {self.device}: {', '.join(on) or 'none'}"


def set_determinism(on: bool) -> None:
    """Deterministic kernels everywhere when `on`; torch's defaults back when not.

    cuBLAS reads CUBLAS_WORKSPACE_CONFIG when it makes its handle, at the first
    matmul on the GPU: set before the model is built, it is in time in a worker
    process. An operation with no deterministic kernel then raises (naming itself)
    rather than silently breaking the bit-exact resume the user asked for.
    """
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    if on:
        torch.backends.cudnn.benchmark = False  # autotuning may pick another algorithm per run


def set_tf32(wanted: bool, device_type: str) -> bool:
    """TF32 for fp32 matmuls and convolutions on a CUDA device from Ampere on; whether it
    is on. Only the new `fp32_precision` switches are used: torch refuses to read the
    legacy `allow_tf32` flags once the two APIs are mixed."""
    if device_type != "cuda":
        return False
    on = wanted and torch.cuda.get_device_capability() >= (8, 0)
    mode = "tf32" if on else "ieee"
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode
    return on


def is_convolutional(model: nn.Module) -> bool:
    """Whether convolutions carry the model: more than one 2-d convolution (a ViT's patch
    embedding is a single one, and gains nothing from channels-last)."""
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1


def _images_channels_last(module, args, kwargs):
    """Forward pre-hook: the batch's images in the weights' memory order, on the device
    (the collator's NCHW copy would otherwise be converted at every convolution)."""
    pixels = kwargs.get("pixel_values")
    if pixels is not None and pixels.dim() == 4:
        kwargs = {**kwargs, "pixel_values": pixels.contiguous(memory_format=torch.channels_last)}
    elif args and torch.is_tensor(args[0]) and args[0].dim() == 4:
        args = (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return args, kwargs


def use_channels_last(model: nn.Module, device_type: str, deterministic: bool) -> tuple[bool, bool]:
    """A convolutional network on CUDA: weights and inputs channels-last and cudnn
    autotuning (images come at one size, so each shape is tuned once). Returns
    (channels_last, cudnn_benchmark). Autotuning stays off for a deterministic run."""
    if device_type != "cuda" or not is_convolutional(model):
        if not deterministic:
            torch.backends.cudnn.benchmark = False
        return False, False
    model.to(memory_format=torch.channels_last)
    model.register_forward_pre_hook(_images_channels_last, with_kwargs=True)
    torch.backends.cudnn.benchmark = not deterministic
    return True, not deterministic


def attention_implementation(model: nn.Module) -> str | None:
    """The attention kernel the transformers model inside `model` runs: "sdpa", "eager",
    "flash_attention_2", ...; None for a model with no transformers config.

    transformers keeps the choice privately (engine.training.compat.config_attention).
    """
    from engine.training.compat import config_attention

    none = object()
    for module in model.modules():
        value = config_attention(getattr(module, "config", None), default=none)
        if value is not none:  # the first transformers config decides
            return value
    return None
