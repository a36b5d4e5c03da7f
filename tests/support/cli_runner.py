"""Run `hubtune ...` for a test: in this process (click's runner) unless the test needs a
process of its own (its own environment, read by libraries at import time).

A subprocess costs a fresh import of torch and transformers, seconds on the 2-core
machine, and proves nothing more for most commands: the worker a command starts is a
real process either way. Results have the shape of `subprocess.run`'s.
"""

from __future__ import annotations

import os
import signal
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


def interruptible_hubtune(*args: str) -> subprocess.Popen:
    """A `hubtune ARGS` process that Ctrl+C (SIGINT) reaches as it reaches one started at
    a prompt, with its stdout and stderr piped.

    A process started with SIGINT ignored passes that on through exec: a shell's
    background job (`make test &`, nohup) ignores it, and so would every child of the
    suite. A handler of our own in this process for the moment of the start is reset to
    the default by exec instead.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen([sys.executable, "-m", "tui.cli", *args], cwd=REPO,
                                env=os.environ.copy(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    finally:
        signal.signal(signal.SIGINT, previous)


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
