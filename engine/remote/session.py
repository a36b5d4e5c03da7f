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

import json
import os
import queue
import shlex
import subprocess
import threading
from typing import Any

from engine.core.errors import HubtuneError

PROTOCOL = 1
SSH_ENV = "HUBTUNE_SSH_COMMAND"
CONNECT_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 120.0


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
             timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """Run `hubtune ARGV...` there; returns {"exit", "stdout", "error"}."""
        with self._lock:
            self._next += 1
            request = {"id": self._next, "argv": [str(a) for a in argv], "files": files or {}}
            self._send(request)
            answer = self._line(timeout)
            if answer.get("id") != request["id"]:
                self.close()
                raise RemoteError(f"Remote {self.remote.name} answered out of turn; the "
                                  "connection was closed.")
            return answer

    def ping(self, timeout: float = 10.0) -> bool:
        with self._lock:
            self._next += 1
            self._send({"id": self._next, "ping": True})
            return self._line(timeout).get("pong") is True

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
