"""Which mixed precision a run trains in.

Weights are always float32 masters (`engine.modeling.loading.MASTER_DTYPE`); the
precision is only the autocast dtype of the forward pass. `auto` picks bfloat16 where
the GPU computes it natively (compute capability 8.0 and up: A100, H100, L4, RTX 30xx
on), float16 with a gradient scaler on older GPUs (V100, T4: torch reports bf16 as
"supported" there by emulation, several times slower than fp16), and float32 on the
CPU. An explicit `bf16` also runs on the CPU (torch's CPU autocast), which is how the
CPU tests prove the mixed-precision paths.

Asking costs no CUDA context: the planner and the TUI ask NVML for the compute
capability; torch is asked only once CUDA is initialised anyway (in the run's
worker process).
"""

from __future__ import annotations

from collections.abc import Callable

from engine.core.errors import HubtuneError


def native_bf16(monitor=None) -> bool:
    """Whether the first GPU this process sees computes bfloat16 natively. `monitor` is
    an `engine.cluster.gpus.GpuMonitor` (tests pass one over a fake NVML)."""
    import torch

    if monitor is None and torch.cuda.is_initialized():
        return torch.cuda.is_bf16_supported(including_emulation=False)
    from engine.cluster.gpus import GpuMonitor

    monitor = monitor or GpuMonitor()
    visible = monitor.visible()
    if visible:
        capability = monitor.compute_capability(visible[0])
        if capability is not None:
            return capability >= (8, 0)
    # No NVML reading (no nvidia-ml-py, an unusual driver): torch's answer, which
    # initialises CUDA in this process.
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_precision(requested: str, *, cuda: bool | None = None,
                      bf16: Callable[[], bool] = native_bf16) -> str:
    """accelerate's `mixed_precision` value ("no", "bf16" or "fp16") for a config's
    `train.precision`. `cuda` defaults to whether torch sees a GPU."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if requested == "auto":
        if not cuda:
            return "no"
        return "bf16" if bf16() else "fp16"
    if requested == "fp16" and not cuda:
        raise HubtuneError("train.precision fp16 needs a GPU; use bf16 (CPU autocast), auto "
                           "or fp32 on the CPU.")
    return {"fp32": "no"}.get(requested, requested)


def precision_label(resolved: str) -> str:
    """The config's name for a resolved precision ("no" reads as fp32)."""
    return "fp32" if resolved == "no" else resolved
