"""Run `hubtune ...` for a test: in this process (click's runner) unless the test needs a
process of its own (its own environment, read by libraries at import time).

A subprocess costs a fresh import of torch and transformers, seconds on the 2-core
machine, and proves nothing more for most commands: the worker a command starts is a
real process either way. Results have the shape of `subprocess.run`'s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def hubtune(*args: str, env: dict | None = None, timeout: int = 300
            ) -> subprocess.CompletedProcess:
    if env is not None:
        return subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True,
                              text=True, timeout=timeout, cwd=REPO, env=env)
    from click.testing import CliRunner

    from tui.cli import cli

    result = CliRunner().invoke(cli, list(args), prog_name="hubtune")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback the user would have seen: fail loudly
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout,
                                       result.stderr)


def hubtune_process(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """A real `hubtune` process with this process's environment."""
    return hubtune(*args, env=os.environ.copy(), timeout=timeout)


def ok(*args: str) -> subprocess.CompletedProcess:
    """`hubtune ARGS` that must succeed (its stderr is the failure's message)."""
    result = hubtune(*args)
    assert result.returncode == 0, result.stderr
    return result


def write_run_config(tmp_path: Path, data: Path, name: str) -> Path:
    """A config whose model folder exists but holds nothing: enough for commands that
    record or queue runs without training them."""
    import yaml

    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "name": name, "model": {"id": str(model)}, "head": {"task": "text-classification"},
        "data": {"train": str(data)}, "train": {"epochs": 1}}))
    return path
