"""The run panel's GPU line. The readings come from `engine.cluster.gpus` (NVML through
nvidia-ml-py), read by the polling thread for the devices the selected run trains on;
on a machine without an NVIDIA driver there are none and the line says "no GPU"."""

from __future__ import annotations

from engine.cluster.gpus import GpuMonitor, GpuReading

__all__ = ["GpuMonitor", "GpuReading", "gpu_line"]

SHOWN = 4
"""Devices named on the line; more are counted."""


def gpu_line(readings: list[GpuReading]) -> str:
    """One line for the run panel: each device by its physical index (as nvidia-smi
    numbers it), "n/a" for what it cannot report (a MIG slice's utilisation)."""
    from tui.formatting import human_bytes

    if not readings:
        return "no GPU"

    def one(r: GpuReading) -> str:
        label = f"GPU{r.index}" if r.index >= 0 else "GPU?"
        if r.mig:
            label += " MIG"
        util = "n/a" if r.utilisation is None else f"{r.utilisation}%"
        if r.memory_used is None and r.memory_total is None:
            mem = "n/a"
        else:
            mem = "/".join("n/a" if v is None else human_bytes(v)
                           for v in (r.memory_used, r.memory_total))
        return f"{label} {util} · {mem}"

    line = "  ".join(one(r) for r in readings[:SHOWN])
    if len(readings) > SHOWN:
        line += f"  +{len(readings) - SHOWN} more"
    return line
