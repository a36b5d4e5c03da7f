"""Training workers forked from a process that has imported torch and transformers once.

`python -m engine.launch.worker` spends seconds importing torch and transformers before its first
line of hubtune runs, and the suite starts dozens of workers. In the test process the
worker's spawn (`engine.launch.start.popen`) comes here instead: a server process (one per
distinct import-time environment) imports the libraries once, and forks a new worker per
request. The worker is still a process of its own, as `Popen` would give it: its own pid
and session, the environment, working folder, stdin and log it was asked for, and it runs
engine.launch.worker as `__main__` exactly as `python -m` does. So SIGTERM, SIGKILL, a lost
lease and resume behave as with an exec'd worker; the exec'd path itself stays covered by
the tests that start `hubtune` as a subprocess and by the torchrun tests.

Run as a script, this file is the server: one JSON request per stdin line
(`{"argv", "env", "cwd", "log"}`), one JSON reply per stdout line (`{"pid"}`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

IMPORT_TIME_PREFIXES = ("HF_", "HUGGINGFACE_", "TRANSFORMERS_", "TORCH", "PYTORCH_", "OMP_",
                        "MKL_", "PYTHON", "CUDA_", "NVIDIA_", "TOKENIZERS_", "XDG_", "TMP")
"""Environment variables a library may read when it is imported: a request whose values
differ from a server's gets a server of its own."""

PRELOAD = ("torch", "transformers", "accelerate", "safetensors.torch", "datasets.fingerprint",
           "engine.training.loop", "engine.training.setup", "engine.modeling.loading",
           "engine.tasks", "store")


def _signature(env: dict[str, str]) -> tuple:
    return tuple(sorted((k, v) for k, v in env.items() if k.startswith(IMPORT_TIME_PREFIXES)))


class _Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "engine.launch.worker"],  # the name conftest looks for
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, bufsize=1,
            cwd=Path(__file__).parent)

    def fork(self, request: dict) -> int:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise RuntimeError(f"the warm worker server ended (exit {self.proc.wait()})")
        return json.loads(reply)["pid"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class ForkedWorker:
    """What the spawn's caller gets back: Popen's `pid`."""

    def __init__(self, pid: int) -> None:
        self.pid = pid


class WarmLauncher:
    """A drop-in for `subprocess.Popen` at the worker's spawn."""

    def __init__(self, popen=subprocess.Popen) -> None:
        self._popen = popen
        self._servers: dict[tuple, _Server] = {}
        self._lock = threading.Lock()
        self.forked = 0

    def __call__(self, command: list[str], **kwargs):
        if command[:3] != [sys.executable, "-m", "engine.launch.worker"] or not kwargs.get(
                "start_new_session"):
            return self._popen(command, **kwargs)  # torchrun, several nodes: exec as usual
        env = kwargs["env"]
        request = {"argv": command[2:], "env": env, "log": kwargs["stdout"].name,
                   "cwd": str(kwargs.get("cwd") or os.getcwd())}
        with self._lock:
            key = _signature(env)
            if key not in self._servers:
                self._servers[key] = _Server(env)
            pid = self._servers[key].fork(request)
            self.forked += 1
        return ForkedWorker(pid)

    def close(self) -> None:
        with self._lock:
            for server in self._servers.values():
                server.close()
            self._servers.clear()


# -- the server -------------------------------------------------------------------------


def _reap(*_: object) -> None:
    """Collect ended workers at once, so a dead worker is never a zombie that looks alive."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(request: dict) -> None:
    import runpy
    import traceback

    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.close(null)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - fd 0 outlives this frame
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        module, *args = request["argv"]
        sys.argv = [module, *args]  # runpy puts the module's file in argv[0]
        sys.path[0] = os.getcwd()  # as `python -m` puts it
        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def serve() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    # A fork keeps only the forking thread: no Python thread may hold a lock at a fork. The
    # native threads torch and pyarrow start at import (idle pools) have fork handlers, as
    # every DataLoader worker forked after `import torch` relies on.
    if threading.active_count() != 1:
        raise SystemExit(f"warm worker server: {threading.active_count()} Python threads")
    signal.signal(signal.SIGCHLD, _reap)
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        sys.stdout.write(json.dumps({"pid": pid}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    serve()
