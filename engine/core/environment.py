"""What a run ran on: library versions, device, host and git revision.

Recorded in `runs.env_json` so results can be traced to the software that
made them. Never records tokens or other secrets from the environment.
"""

from __future__ import annotations

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
    }
    try:
        import torch

        env["cuda"] = torch.version.cuda
        env["gpus"] = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ] if torch.cuda.is_available() else []
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return env


def _git_revision(workdir: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=workdir, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
