"""NVIDIA GPUs through NVML (nvidia-ml-py): which exist, which ones a run uses, and what
they are doing.

NVML is a small C library: reading it costs microseconds, never touches torch and never
creates a CUDA context, so the CLI, the TUI's polling thread and (later) the run queue
can all ask it. On a machine without an NVIDIA driver (or without nvidia-ml-py) there
are no GPUs and every reading is empty.

Devices are named by their physical NVML index, the number `nvidia-smi` shows. A
process's CUDA ordinals are positions in its `CUDA_VISIBLE_DEVICES`, so "cuda:0" of a
run started with `CUDA_VISIBLE_DEVICES=3` is GPU3 here. Runs record their devices' UUIDs
(`engine.core.environment`), which name a device the same way in every process.

Each field of a reading is read on its own: a field the device cannot report (the
utilisation of a MIG slice raises NVMLError_NotSupported) is None, and a device that
cannot be read at all never hides the others.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engine.core.errors import HubtuneError

_FROM_ENVIRONMENT: Any = object()
"""`cuda_visible_devices` not given: read this process's environment."""


@dataclass(frozen=True)
class GpuReading:
    index: int
    """Physical (NVML) index, as nvidia-smi numbers the GPU; a MIG slice has its GPU's."""
    name: str | None
    utilisation: int | None
    """Percent of the last sample period a kernel was running; None where unsupported."""
    memory_used: int | None
    memory_total: int | None
    uuid: str | None = None
    mig: bool = False
    """A MIG slice of GPU `index` rather than the whole GPU."""
    processes: tuple[int, ...] | None = None
    """Pids of the compute processes on the device, when asked for and readable."""

    @property
    def memory_free(self) -> int | None:
        if self.memory_used is None or self.memory_total is None:
            return None
        return max(self.memory_total - self.memory_used, 0)


Device = int | str
"""A physical NVML index, or the full UUID of a device (GPU-... or MIG-...)."""


class GpuMonitor:
    """NVML, initialised once. `nvml` is the pynvml module, or an object with the same
    functions (tests pass a fake); None imports pynvml."""

    def __init__(self, nvml: Any = None) -> None:
        self._nv: Any = None
        self._count = 0
        try:
            if nvml is None:
                import pynvml as nvml
            nvml.nvmlInit()
            self._count = int(nvml.nvmlDeviceGetCount())
            self._nv = nvml
        except Exception:  # no driver, no library, no device: all mean "no GPU"
            self._nv, self._count = None, 0

    @property
    def available(self) -> bool:
        return self._nv is not None and self._count > 0

    @property
    def count(self) -> int:
        """Physical GPUs on the machine, whatever CUDA_VISIBLE_DEVICES says."""
        return self._count if self._nv is not None else 0

    # -- which devices ------------------------------------------------------------

    def visible(self, cuda_visible_devices: str | None = _FROM_ENVIRONMENT) -> list[Device]:
        """The devices CUDA would see with this `CUDA_VISIBLE_DEVICES`, in CUDA's order.

        Parsed as the CUDA runtime (and torch) parse it: unset means every GPU; an empty
        value none; integers are indices (the first invalid or out-of-range entry ends
        the list, a repeated one empties it); GPU-/MIG- entries are UUIDs, whole or a
        unique prefix. Integer indices assume CUDA's order is NVML's (PCI bus) order,
        which `CUDA_DEVICE_ORDER=PCI_BUS_ID` guarantees; UUIDs hold in any order.
        """
        if cuda_visible_devices is _FROM_ENVIRONMENT:
            cuda_visible_devices = os.environ.get("CUDA_VISIBLE_DEVICES")
        if not self.available:
            return []
        if cuda_visible_devices is None:
            return list(range(self._count))
        entries = [e.strip() for e in cuda_visible_devices.split(",")]
        out: list[Device] = []
        if entries[0].startswith(("GPU-", "MIG-")):
            for entry in entries:
                device = self._by_uuid(entry) if entry.startswith(("GPU-", "MIG-")) else None
                if device is None:
                    break
                if device in out:
                    return []
                out.append(device)
            return out
        for entry in entries:
            index = _leading_int(entry)
            if index is None or index >= self._count:
                break
            if index in out:
                return []
            out.append(index)
        return out

    def run_devices(self, env: dict | None) -> list[Device]:
        """The devices a run trains on, from the environment its worker recorded.

        By the UUIDs recorded (the only names that hold across processes and
        CUDA_DEVICE_ORDER); failing that by the `CUDA_VISIBLE_DEVICES` the worker saw;
        failing that (a run recorded before either was kept) every GPU. A run whose
        worker saw no GPU uses none.
        """
        env = env or {}
        local = env.get("local_processes")
        take = int(local) if isinstance(local, int) and local > 0 else None
        recorded = env.get("gpu_devices")
        if isinstance(recorded, list):
            if not recorded and "cuda_visible_devices" in env:
                return []  # the worker saw no GPU: the run trains on the CPU
            uuids = [d.get("uuid") for d in recorded[:take] if isinstance(d, dict)]
            found = [self._recorded(u) for u in uuids if isinstance(u, str)]
            if found and None not in found and len(found) == len(uuids):
                return list(dict.fromkeys(found))  # type: ignore[arg-type]
        if "cuda_visible_devices" in env and env["cuda_visible_devices"] is not None:
            return self.visible(str(env["cuda_visible_devices"]))[:take]
        return self.visible(None)[:take]

    # -- readings ---------------------------------------------------------------

    def read(self, devices: Iterable[Device] | None = None, *,
             processes: bool = False) -> list[GpuReading]:
        """A reading for each of `devices` (default: every GPU), in that order."""
        if not self.available:
            return []
        out = []
        for device in range(self._count) if devices is None else devices:
            handle = self._call("nvmlDeviceGetHandleByIndex" if isinstance(device, int)
                                else "nvmlDeviceGetHandleByUUID", device)
            if handle is None:
                if isinstance(device, int):  # a GPU NVML lists but cannot open
                    out.append(GpuReading(device, None, None, None, None))
                continue
            index, mig = self._physical_index(handle)
            if index is None:
                index = device if isinstance(device, int) else -1
            util = self._call("nvmlDeviceGetUtilizationRates", handle)
            mem = self._call("nvmlDeviceGetMemoryInfo", handle)
            pids = None
            if processes:
                procs = self._call("nvmlDeviceGetComputeProcesses", handle)
                pids = None if procs is None else tuple(int(p.pid) for p in procs)
            out.append(GpuReading(
                index=index,
                name=_text(self._call("nvmlDeviceGetName", handle)),
                utilisation=_int(util, "gpu"),
                memory_used=_int(mem, "used"),
                memory_total=_int(mem, "total"),
                uuid=_text(self._call("nvmlDeviceGetUUID", handle)),
                mig=mig,
                processes=pids,
            ))
        return out

    def compute_capability(self, device: Device) -> tuple[int, int] | None:
        """(major, minor) CUDA compute capability of `device`, or None where NVML
        cannot say. 8.0 and up (Ampere on) computes bfloat16 natively."""
        handle = self._call("nvmlDeviceGetHandleByIndex" if isinstance(device, int)
                            else "nvmlDeviceGetHandleByUUID", device)
        found = self._call("nvmlDeviceGetCudaComputeCapability", handle)
        try:
            major, minor = found
            return int(major), int(minor)
        except (TypeError, ValueError):
            return None

    # -- internals --------------------------------------------------------------

    def _by_uuid(self, uuid: str) -> Device | None:
        """The device a full UUID, or (GPU-) a unique prefix of one, names here."""
        handle = self._call("nvmlDeviceGetHandleByUUID", uuid)
        if handle is not None:
            index, mig = self._physical_index(handle)
            if mig:
                return uuid  # a slice is only reachable by its UUID
            if index is not None:
                return index
        if uuid.startswith("GPU-"):
            uuids = [_text(self._call("nvmlDeviceGetUUID",
                                      self._call("nvmlDeviceGetHandleByIndex", i))) or ""
                     for i in range(self._count)]
            matches = [i for i, full in enumerate(uuids) if full.startswith(uuid)]
            if len(matches) == 1:
                return matches[0]
        return None

    def _recorded(self, uuid: str) -> Device | None:
        """A UUID a worker recorded: torch reports a MIG slice's bare, so GPU- may be
        the MIG-... NVML knows it by."""
        found = self._by_uuid(uuid)
        if found is None and uuid.startswith("GPU-"):
            found = self._by_uuid(f"MIG-{uuid[4:]}")
        return found

    def _call(self, function: str, *args: Any) -> Any:
        """One NVML call; None when it raises (NotSupported, a lost GPU, a fake without
        it) or when an argument is a handle that could not be had."""
        if self._nv is None or any(a is None for a in args):
            return None
        try:
            return getattr(self._nv, function)(*args)
        except Exception:
            return None

    def _physical_index(self, handle: Any) -> tuple[int | None, bool]:
        flag = self._call("nvmlDeviceIsMigDeviceHandle", handle)
        mig = bool(getattr(flag, "value", flag))
        if mig:
            parent = self._call("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", handle)
            index = None if parent is None else self._call("nvmlDeviceGetIndex", parent)
        else:
            index = self._call("nvmlDeviceGetIndex", handle)
        return (None if index is None else int(index)), mig


def visible_gpu_count(monitor: GpuMonitor | None = None,
                      cuda_visible_devices: str | None = _FROM_ENVIRONMENT) -> int:
    """How many GPUs a process started now would see; 0 without a driver. Asks NVML
    only, so the caller never initialises CUDA (as torch.cuda.device_count does too)."""
    return len((monitor or GpuMonitor()).visible(cuda_visible_devices))


def check_process_count(processes: int, monitor: GpuMonitor | None = None, *,
                        run_id: int | None = None) -> None:
    """Refuse `processes` data-parallel ranks when fewer GPUs than that are visible.

    Each rank takes one GPU (its local rank); two ranks on one GPU make NCCL refuse to
    start, after the run was recorded and the model loaded. With no GPU at all the ranks
    are CPU processes over gloo, as many as asked. `run_id`: a resume of that run, which
    keeps the process count it was launched with.
    """
    if processes <= 1:
        return
    monitor = monitor or GpuMonitor()
    cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = visible_gpu_count(monitor, cvd)
    if visible == 0 or processes <= visible:
        return
    where = "" if cvd is None else f" with CUDA_VISIBLE_DEVICES={cvd}"
    seen = f"only {visible} GPU is" if visible == 1 else f"only {visible} GPUs are"
    why = f"{where}: processes would share a GPU, which NCCL refuses."
    if run_id is not None:
        raise HubtuneError(
            f"Run {run_id} was launched with --processes {processes}, one GPU per process, "
            f"but {seen} visible{why} Set CUDA_VISIBLE_DEVICES to name {processes} GPUs "
            "to resume it.")
    raise HubtuneError(
        f"--processes {processes} needs one GPU per process, but {seen} visible{why} "
        f"Use --processes {visible}, or set CUDA_VISIBLE_DEVICES to name {processes} GPUs.")


def _int(value: Any, attr: str) -> int | None:
    try:
        return int(getattr(value, attr))
    except (AttributeError, TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _leading_int(entry: str) -> int | None:
    """The integer an entry starts with, as strtoul reads it ("1gpu" is 1); None if none."""
    digits = ""
    for ch in entry.lstrip("+"):
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else None
