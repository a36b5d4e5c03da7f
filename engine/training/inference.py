"""Where a trained model runs for inference in this process, and in which precision.

Every inference path (the playground, `hubtune predict`, `predict --file`, the
embedding "run") asks `place_inference` once and keeps what it returns: a device in
this process's CUDA numbering and the autocast dtype that follows the run's
`train.precision` on that device. Weights stay float32 masters, as in training;
autocast computes the matmuls in bf16/fp16 and keeps softmax and norms in float32.
fp32 work runs its matmuls on TF32 tensor cores unless the run asked for strict
float32 (`train.tf32: false`).

The GPU is chosen from the queue's slots (`engine.runs.queue.read_slots`, handed in: this
layer never reads the store): a GPU no run holds and no other user loads first, so a
`predict --file` never lands on the GPU a training run holds while another is idle.
Only GPUs the user's `CUDA_VISIBLE_DEVICES` shows are candidates. Slots name GPUs by
their physical (NVML) index; the CUDA ordinal is found by UUID, which holds whatever
`CUDA_DEVICE_ORDER` says.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.core.errors import HubtuneError

INFERENCE_PRECISIONS = ("fp32", "bf16", "fp16")
DEVICE_HELP = ("cpu, cuda (the freest GPU), cuda:N (this process's CUDA numbering) or "
               "gpuN (the queue's slot name, as `hubtune queue slots` lists it)")


@dataclass(frozen=True)
class InferencePlacement:
    """A device and an autocast precision for running a model."""

    device: str
    """A torch device in this process's numbering: "cpu" or "cuda:N"."""
    precision: str = "fp32"
    """The autocast dtype: bf16, fp16, or fp32 (no autocast)."""
    gpu: int | None = None
    """The GPU's physical (NVML) index, the slot `gpuN`; None on the CPU or when NVML
    cannot say."""
    tf32: bool = True
    """fp32 matmuls may run on TF32 tensor cores (GPUs from Ampere on)."""
    reason: str = ""
    """Why this device, in words."""

    @property
    def device_type(self) -> str:
        return self.device.split(":", 1)[0]

    @property
    def dtype(self) -> Any:
        """The torch dtype autocast computes in; None for fp32."""
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context every forward pass of this placement runs under."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        import torch

        return torch.autocast(self.device_type, dtype=self.dtype)

    def prepare(self, model):
        """Move `model` to the device (its weights stay float32) and set the process's
        matmul precision for it; returns the model."""
        if self.device_type == "cuda":
            import torch

            from engine.training.backends import set_tf32

            # Tensors a model makes without naming a device go to the current one.
            torch.cuda.set_device(self.device)
            set_tf32(self.tf32, "cuda")
        return model.to(self.device)

    def describe(self) -> str:
        """`gpu1 (cuda:0), bf16` / `cpu, fp32`: where predictions run, for a user."""
        where = self.device if self.gpu is None else f"gpu{self.gpu} ({self.device})"
        return f"{where}, {self.precision}"


CPU = InferencePlacement("cpu", "fp32", reason="the CPU")
"""Plain float32 on the CPU: what a `Predictor` uses when no placement is given."""


def place_inference(precision: str = "auto", *, device: str | None = None,
                    slots: Sequence | None = None, tf32: bool = True, monitor=None,
                    environ: Mapping[str, str] | None = None,
                    cuda_available: bool | None = None,
                    cuda_uuids: Callable[[], list[str | None]] | None = None,
                    ) -> InferencePlacement:
    """The device and autocast precision for inference.

    `precision` is the run's `train.precision` (auto, fp32, bf16, fp16); `device` a
    user's choice (`DEVICE_HELP`; None: as "cuda" where torch sees a GPU, else the
    CPU); `slots` the queue's slots (`engine.runs.queue.read_slots`), None where no queue
    is known (a run's own worker, whose CUDA_VISIBLE_DEVICES is its slot: its first
    GPU). `monitor`, `environ`, `cuda_available` and `cuda_uuids` default to this
    process's NVML, environment and torch (tests hand in fakes).
    """
    from engine.cluster.gpus import GpuMonitor

    environ = os.environ if environ is None else environ
    choice = (device or "").strip().lower() or None
    if choice is not None and not (choice in ("cpu", "cuda") or _ordinal(choice) is not None
                                   or _slot_index(choice) is not None):
        raise HubtuneError(f"--device {device!r} is not a device; use {DEVICE_HELP}.")
    if choice == "cpu":
        return _with_precision("cpu", None, precision, tf32, None, "asked for the CPU")
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if not cuda_available:
        if choice is not None:
            raise HubtuneError(f"--device {device} needs a GPU, but torch sees none here; "
                               "use --device cpu.")
        return _with_precision("cpu", None, precision, tf32, None, "no GPU is visible")
    monitor = monitor or GpuMonitor()
    visible = monitor.visible(environ.get("CUDA_VISIBLE_DEVICES"))
    uuids = cuda_uuids or _torch_uuids
    if choice is not None and _ordinal(choice) is not None:
        ordinal = _ordinal(choice)
        count = len(uuids())
        if ordinal >= count:
            raise HubtuneError(f"--device {device}: this process sees {count} GPU"
                               f"{'' if count == 1 else 's'} (cuda:0 to cuda:{count - 1}).")
        gpu = visible[ordinal] if ordinal < len(visible) else None
        gpu = gpu if isinstance(gpu, int) else None
        return _with_precision(f"cuda:{ordinal}", gpu, precision, tf32, monitor,
                               f"asked for cuda:{ordinal}")
    if choice is not None and _slot_index(choice) is not None:
        gpu = _slot_index(choice)
        if gpu not in visible:
            shown = ", ".join(f"gpu{g}" for g in visible if isinstance(g, int)) or "none"
            raise HubtuneError(f"--device {device} is not a GPU this process can use "
                               f"(visible: {shown}); check CUDA_VISIBLE_DEVICES.")
        return _with_precision(_cuda_device(gpu, monitor, visible, uuids), gpu, precision,
                               tf32, monitor, f"asked for gpu{gpu}")
    gpu, why = pick_gpu(slots, visible)
    if gpu is None:
        return _with_precision("cuda:0", None, precision, tf32, monitor, why)
    return _with_precision(_cuda_device(gpu, monitor, visible, uuids), gpu, precision, tf32,
                           monitor, why)


def pick_gpu(slots: Sequence | None, visible: Sequence) -> tuple[int | None, str]:
    """(physical index, why) of the GPU to run on among the `visible` ones: one no run
    holds and no other user loads, else one no run holds, else the one with the most
    free memory; ties go to the first visible. With no slots (no queue known) the first
    visible GPU; None when NVML names none (a MIG slice, no reading): CUDA's first."""
    order = {g: n for n, g in enumerate(visible) if isinstance(g, int)}
    candidates = [s for s in slots or () if str(s.name).startswith("gpu") and s.index in order]
    if not candidates:
        first = visible[0] if visible and isinstance(visible[0], int) else None
        return first, "the first visible GPU"

    def rank(slot) -> tuple:
        free = getattr(slot.reading, "memory_free", None) or 0
        return (bool(slot.held_by), bool(slot.busy), -free, order[slot.index])

    best = min(candidates, key=rank)
    if not best.held_by and not best.busy:
        why = "no run holds it"
    elif not best.held_by:
        why = "no run holds it, though another process uses it"
    else:
        runs = ", ".join(f"#{r}" for r in best.held_by)
        why = f"every visible GPU is held; run {runs} holds this one, with the most free memory"
    return best.index, why


def _with_precision(device: str, gpu: int | None, requested: str, tf32: bool, monitor,
                    why: str) -> InferencePlacement:
    """The placement with the run's precision as it applies on `device`: auto is bf16 on a
    GPU that computes it natively (compute capability 8.0 on), fp16 on older GPUs and
    fp32 on the CPU; fp16 has no fast CPU kernels, so it runs in fp32 there."""
    if requested not in ("auto", *INFERENCE_PRECISIONS):
        raise HubtuneError(f"train.precision {requested!r} is not one of auto, "
                           f"{', '.join(INFERENCE_PRECISIONS)}.")
    on_gpu = device.startswith("cuda")
    precision = requested
    if requested == "auto":
        precision = ("bf16" if _native_bf16(device, gpu, monitor) else "fp16") if on_gpu \
            else "fp32"
    elif requested == "fp16" and not on_gpu:
        precision = "fp32"
    return InferencePlacement(device, precision, gpu, tf32, why)


def _native_bf16(device: str, gpu: int | None, monitor) -> bool:
    capability = monitor.compute_capability(gpu) if monitor is not None and gpu is not None \
        else None
    if capability is None:
        import torch

        capability = torch.cuda.get_device_capability(device)
    return tuple(capability) >= (8, 0)


def _cuda_device(gpu: int, monitor, visible: Sequence, uuids) -> str:
    """`cuda:N` for physical GPU `gpu`: by UUID where torch and NVML both give one, else by
    its position in CUDA_VISIBLE_DEVICES (NVML's order, as CUDA_DEVICE_ORDER=PCI_BUS_ID
    makes CUDA's)."""
    readings = monitor.read([gpu])
    wanted = readings[0].uuid if readings else None
    if wanted:
        for ordinal, uuid in enumerate(uuids()):
            if uuid and uuid == wanted:
                return f"cuda:{ordinal}"
    return f"cuda:{list(visible).index(gpu)}"


def _torch_uuids() -> list[str | None]:
    """Each CUDA device's UUID as NVML writes it (GPU-...), in this process's order."""
    import torch

    out: list[str | None] = []
    for i in range(torch.cuda.device_count()):
        raw = getattr(torch.cuda.get_device_properties(i), "uuid", None)
        text = str(raw).strip() if raw is not None else ""
        out.append(None if not text else text if text.startswith(("GPU-", "MIG-"))
                   else f"GPU-{text}")
    return out


def _ordinal(choice: str) -> int | None:
    head, sep, tail = choice.partition(":")
    return int(tail) if head == "cuda" and sep and tail.isdigit() else None


def _slot_index(choice: str) -> int | None:
    return int(choice[3:]) if choice.startswith("gpu") and choice[3:].isdigit() else None
