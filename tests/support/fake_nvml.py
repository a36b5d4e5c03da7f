"""A fake of the pynvml functions `engine.cluster.gpus` calls: the one boundary the GPU
tests fake (there is no NVIDIA driver on the CPU machines), over a made-up machine.
It raises as the real library does for what a device cannot report (a MIG slice's
utilisation)."""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1 << 30


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's name
    pass


class NVMLError_NotFound(NVMLError):  # noqa: N801 - pynvml's name
    pass


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    util: int | None = 0
    used: int = 1 * GIB
    total: int = 80 * GIB
    pids: tuple[int, ...] = ()
    mig_of: int | None = None
    """A MIG slice of this physical GPU (reachable by UUID only)."""
    capability: tuple[int, int] = (9, 0)


@dataclass
class _Util:
    gpu: int
    memory: int = 0


@dataclass
class _Mem:
    used: int
    total: int

    @property
    def free(self) -> int:
        return self.total - self.used


@dataclass
class _Proc:
    pid: int
    usedGpuMemory: int = 0  # noqa: N815 - pynvml's name


class FakeNvml:
    """The pynvml functions the monitor calls, over `gpus` (physical, in NVML order)
    and `migs` (slices); handles are the FakeGpu objects themselves."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu], migs: list[FakeGpu] = (), *,
                 driver: bool = True) -> None:
        self.gpus, self.migs, self.driver = gpus, list(migs), driver

    def nvmlInit(self):  # noqa: N802
        if not self.driver:
            raise NVMLError("Driver Not Loaded")

    def nvmlDeviceGetCount(self):  # noqa: N802
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, i):  # noqa: N802
        if not 0 <= i < len(self.gpus):
            raise NVMLError("Invalid Argument")
        return self.gpus[i]

    def nvmlDeviceGetHandleByUUID(self, uuid):  # noqa: N802
        for gpu in self.gpus + self.migs:
            if gpu.uuid == uuid:
                return gpu
        raise NVMLError_NotFound("Not Found")

    def nvmlDeviceIsMigDeviceHandle(self, handle):  # noqa: N802
        return int(handle.mig_of is not None)

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle):  # noqa: N802
        return self.gpus[handle.mig_of]

    def nvmlDeviceGetIndex(self, handle):  # noqa: N802
        if handle.mig_of is not None:
            raise NVMLError_NotSupported("Not Supported")
        return self.gpus.index(handle)

    def nvmlDeviceGetName(self, handle):  # noqa: N802
        return handle.name.encode()  # older pynvml returns bytes

    def nvmlDeviceGetUUID(self, handle):  # noqa: N802
        return handle.uuid

    def nvmlDeviceGetUtilizationRates(self, handle):  # noqa: N802
        if handle.util is None or handle.mig_of is not None:
            raise NVMLError_NotSupported("Not Supported")
        return _Util(handle.util)

    def nvmlDeviceGetMemoryInfo(self, handle):  # noqa: N802
        return _Mem(handle.used, handle.total)

    def nvmlDeviceGetComputeProcesses(self, handle):  # noqa: N802
        return [_Proc(p) for p in handle.pids]

    def nvmlDeviceGetCudaComputeCapability(self, handle):  # noqa: N802
        return handle.capability


