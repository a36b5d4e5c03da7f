"""One SSH connection to a remote's `hubtune serve --stdio`, speaking JSON lines.

The connection is the system `ssh` client (so the user's ~/.ssh/config, agent, keys,
ProxyJump and ControlMaster apply), or `HUBTUNE_SSH_COMMAND` split like a shell would
(as GIT_SSH_COMMAND is for git). Nothing listens on a port on either side. Only
hubtune's own commands cross it: the remote command line is built here from the
remote's record with every part shell-quoted (ssh hands it to the remote's shell), and
each request names a hubtune command as a list of arguments, never a shell string.

Protocol (version PROTOCOL): the server's first line is {"hubtune": VERSION,
"protocol": N}; then each request {"id": n, "argv": [...], "files": {...}} gets one
answer {"id": n, "exit": code, "stdout": text, "error": sentence|null}; {"id": n,
"ping": true} is answered {"id": n, "pong": true}.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import shlex
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core.errors import HubtuneError

PROTOCOL = 1
SSH_ENV = "HUBTUNE_SSH_COMMAND"
CONNECT_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 120.0
PIECE_BYTES = 512 << 10
"""A data file travels in pieces of this many bytes (base64 in one JSON line each)."""


class RemoteError(HubtuneError):
    """A remote that cannot be reached or answered out of turn; one sentence."""


def ssh_argv(remote) -> list[str]:
    """The local command that opens `remote` and starts its server there."""
    base = shlex.split(os.environ.get(SSH_ENV) or "ssh")
    target = f"{remote.user}@{remote.host}" if remote.user else remote.host
    options = ["-o", "BatchMode=yes", "-o", "ServerAliveInterval=15",
               "-o", "ServerAliveCountMax=3"]
    if remote.port:
        options += ["-p", str(int(remote.port))]
    return [*base, *options, "--", target, remote_command(remote)]


def remote_command(remote) -> str:
    """The command line the remote's shell runs: every part quoted."""
    parts = shlex.split(remote.hubtune) or ["hubtune"]
    words = [shlex.quote(p) for p in parts] + ["serve", "--stdio"]
    if remote.home:
        words = ["env", shlex.quote(f"HUBTUNE_HOME={remote.home}"), *words]
    return " ".join(words)


class RemoteSession:
    """A live connection; `call` sends one hubtune command and returns its answer."""

    def __init__(self, remote, *, local_version: str) -> None:
        self.remote = remote
        self._next = 0
        self._lock = threading.Lock()
        try:
            self._proc = subprocess.Popen(
                ssh_argv(remote), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", bufsize=1,
                start_new_session=True)
        except OSError as exc:
            raise RemoteError(f"Cannot start the ssh client for remote {remote.name} "
                              f"({exc.strerror or exc}); is ssh installed?") from None
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name="remote-read").start()
        hello = self._line(CONNECT_TIMEOUT_S)
        self.version, self.protocol = _check_hello(remote, hello, local_version)

    def _read(self) -> None:
        for line in self._proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _line(self, timeout: float) -> dict:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise RemoteError(f"Remote {self.remote.name} did not answer within "
                              f"{timeout:g} s; the connection was closed.") from None
        if line is None:
            raise RemoteError(f"Remote {self.remote.name} cannot be reached: "
                              f"{self._reason()}")
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            self.close()
            raise RemoteError(f"Remote {self.remote.name} answered with something other "
                              "than hubtune's protocol (is its --hubtune command hubtune, "
                              "and does its shell print text at login?).")
        return message

    def _reason(self) -> str:
        """ssh's own last words (its stderr), as one line."""
        try:
            self._proc.wait(timeout=5)
            err = self._proc.stderr.read() if self._proc.stderr else ""
        except (subprocess.TimeoutExpired, OSError, ValueError):
            err = ""
        lines = [line.strip() for line in err.splitlines() if line.strip()
                 and not line.startswith("Warning: Permanently added")]
        return (lines[-1] if lines else f"ssh ended with code {self._proc.returncode}") + "."

    def call(self, argv: list[str], *, files: dict[str, str] | None = None,
             timeout: float = REQUEST_TIMEOUT_S,
             on_output: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run `hubtune ARGV...` there; returns {"exit", "stdout", "error"}. What a
        following command prints as it goes (`runs follow`, `train`) is handed to
        `on_output` as it comes (`timeout` is then per piece)."""
        return self._ask({"argv": [str(a) for a in argv], "files": files or {}}, timeout,
                         on_output)

    def _ask(self, request: dict, timeout: float,
             on_output: Callable[[str], None] | None = None) -> dict[str, Any]:
        with self._lock:
            self._next += 1
            request = {"id": self._next, **request}
            self._send(request)
            printed: list[str] = []
            while True:
                answer = self._line(timeout)
                if answer.get("id") != request["id"]:
                    self.close()
                    raise RemoteError(f"Remote {self.remote.name} answered out of turn; "
                                      "the connection was closed.")
                if "chunk" not in answer:
                    return {**answer, "stdout": "".join(printed) + str(answer.get("stdout")
                                                                       or "")}
                if on_output is not None:
                    on_output(str(answer["chunk"]))
                else:  # kept for the answer, as if printed at the end
                    printed.append(str(answer["chunk"]))

    def send_file(self, path: Path) -> str:
        """Copy a local data file there, once: it is kept by its content, so a file sent
        before is not sent again. Returns its path on the remote."""
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        key = {"sha": digest.hexdigest(), "name": path.name}
        found = self._ask({"has": key}, REQUEST_TIMEOUT_S)
        if found.get("path"):
            return str(found["path"])
        offset, size = 0, path.stat().st_size
        with open(path, "rb") as fh:
            while True:
                block = fh.read(PIECE_BYTES)
                last = offset + len(block) >= size
                sent = self._ask({"put": {**key, "offset": offset, "last": last,
                                          "data": base64.b64encode(block).decode()}},
                                 REQUEST_TIMEOUT_S)
                if sent.get("error"):
                    raise RemoteError(f"On {self.remote.name}: {sent['error']}")
                offset += len(block)
                if last:
                    return str(sent["path"])

    def ping(self, timeout: float = 10.0) -> bool:
        return self._ask({"ping": True}, timeout).get("pong") is True

    def _send(self, message: dict) -> None:
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except (OSError, ValueError):
            raise RemoteError(f"Remote {self.remote.name} cannot be reached: "
                              f"{self._reason()}") from None

    def close(self) -> None:
        for stream in (self._proc.stdin,):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_hello(remote, hello: dict, local_version: str) -> tuple[str, int]:
    version, protocol = str(hello.get("hubtune", "?"))[:40], hello.get("protocol")
    if protocol != PROTOCOL:
        raise RemoteError(f"Remote {remote.name} runs hubtune {version} (protocol "
                          f"{protocol}); this machine runs hubtune {local_version} (protocol "
                          f"{PROTOCOL}): install the same version on both.")
    return version, protocol
