"""GPU utilisation and memory through nvidia-ml-py, read by the polling thread.

NVML is a small C library: reading it costs microseconds and never touches
torch. On a machine without an NVIDIA driver every reading is None and the
panel says "no GPU".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    utilisation: int
    """Percent of the last sample period a kernel was running."""
    memory_used: int
    memory_total: int


class GpuMonitor:
    def __init__(self) -> None:
        self._nvml = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._count = pynvml.nvmlDeviceGetCount()
        except Exception:  # no driver, no library, no device: all mean "no GPU"
            self._nvml = None

    @property
    def available(self) -> bool:
        return self._nvml is not None and self._count > 0

    def read(self) -> list[GpuReading]:
        if not self.available:
            return []
        nv, out = self._nvml, []
        try:
            for i in range(self._count):
                handle = nv.nvmlDeviceGetHandleByIndex(i)
                util = nv.nvmlDeviceGetUtilizationRates(handle)
                mem = nv.nvmlDeviceGetMemoryInfo(handle)
                name = nv.nvmlDeviceGetName(handle)
                out.append(GpuReading(i, name.decode() if isinstance(name, bytes) else name,
                                      int(util.gpu), int(mem.used), int(mem.total)))
        except Exception:
            return []
        return out


def gpu_line(readings: list[GpuReading]) -> str:
    """One line for the run panel."""
    from tui.formatting import human_bytes

    if not readings:
        return "no GPU"
    return "  ".join(f"GPU{r.index} {r.utilisation}% · {human_bytes(r.memory_used)}/"
                     f"{human_bytes(r.memory_total)}" for r in readings[:4])
