"""What a run ran on: library versions, device, host and git revision.

Recorded in `runs.env_json` so results can be traced to the software that
made them. Never records tokens or other secrets from the environment.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("hubtune", "torch", "transformers", "accelerate", "huggingface_hub", "tokenizers",
            "safetensors", "datasets", "textual")


def capture_environment(workdir: Path | None = None) -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    env = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "packages": versions,
        "git_revision": _git_revision(workdir or Path.cwd()),
        # Which GPUs the run may use, as this process saw them: the TUI's GPU panel
        # follows these devices (engine.cluster.gpus.GpuMonitor.run_devices).
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "local_processes": _local_processes(),
        # Data workers hand batches over in /dev/shm: a container's 64 MB default explains
        # a run that read its images with fewer workers than asked (engine.training.loader).
        "shm_free_mib": _shm_free_mib(),
    }
    try:
        import torch

        env["cuda"] = torch.version.cuda
        devices = _cuda_devices(torch)
        env["gpus"] = [d["name"] for d in devices]
        env["gpu_devices"] = devices
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return env


def _cuda_devices(torch) -> list[dict]:
    """Each GPU CUDA shows this process: its ordinal here, name and NVML-style UUID
    ("GPU-xxxxxxxx-xxxx-..."), the one name of a device that every process and nvidia-smi
    share. Nothing touches CUDA when it is not available."""
    if not torch.cuda.is_available():
        return []
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append({"cuda_index": i, "name": props.name, "uuid": _nvml_uuid(props)})
    return devices


def _nvml_uuid(props) -> str | None:
    """torch prints a device's UUID bare; NVML and CUDA_VISIBLE_DEVICES prefix it GPU-
    (a MIG slice's is looked up as MIG-... too)."""
    raw = getattr(props, "uuid", None)
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"


def _shm_free_mib() -> int | None:
    import shutil

    try:
        return shutil.disk_usage("/dev/shm").free >> 20
    except OSError:  # no /dev/shm (not Linux)
        return None


def _local_processes() -> int:
    """Ranks on this node: under torchrun rank r trains on the r-th visible GPU, and a
    single process on the first."""
    try:
        return max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def _git_revision(workdir: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=workdir, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
