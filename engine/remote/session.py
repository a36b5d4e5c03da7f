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
"ping": true} is answered {"id": n, "pong": true}. Before its answer a request may get
{"id": n, "chunk": text} lines (what a following command prints as it goes) or, for
{"id": n, "export": {"run": ID}}, {"id": n, "piece": base64} lines (the exported folder
as a tar stream).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import queue
import shlex
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.core.errors import HubtuneError

PROTOCOL = 3
"""3: `runs events` (a run panel's event log); 2: the `export` request and `runs
metrics` (a 1 remote lists runs, but has neither)."""
SSH_ENV = "HUBTUNE_SSH_COMMAND"
CONNECT_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 120.0
SEND_TIMEOUT_S = 120.0
"""How long a request may take to leave (a remote that reads nothing fills the pipe)."""
PIECE_BYTES = 512 << 10
"""A data file travels in pieces of this many bytes (base64 in one JSON line each)."""
MAX_LINE_CHARS = 64 << 20
"""The longest answer line read: a remote that sends more without a newline is cut off
(a hostile or broken one would otherwise fill this machine's memory)."""
_TOO_LONG = object()


class RemoteError(HubtuneError):
    """A remote that cannot be reached or answered out of turn; one sentence."""


class RemoteLost(RemoteError):
    """The connection ended or went silent (a network that may come back), as opposed
    to a remote that answers wrongly (which trying again does not mend)."""


def ssh_argv(remote) -> list[str]:
    """The local command that opens `remote` and starts its server there."""
    try:
        base = shlex.split(os.environ.get(SSH_ENV) or "ssh")
    except ValueError:
        raise RemoteError(f"{SSH_ENV} is not a command line ({os.environ.get(SSH_ENV)!r:.80}"
                          "); fix its quotes or unset it.") from None
    target = f"{remote.user}@{remote.host}" if remote.user else remote.host
    options = ["-o", "BatchMode=yes", "-o", "ServerAliveInterval=15",
               "-o", "ServerAliveCountMax=3"]
    if remote.port:
        options += ["-p", str(int(remote.port))]
    return [*base, *options, "--", target, remote_command(remote)]


def remote_command(remote) -> str:
    """The command line the remote's shell runs: every part quoted (a leading `~/` is
    that machine's home, as typed there)."""
    try:
        parts = shlex.split(remote.hubtune) or ["hubtune"]
    except ValueError:
        raise RemoteError(f"Remote {remote.name}'s --hubtune command {remote.hubtune!r:.80} is "
                          "not a command line; `hubtune remote rm` and add it again.") from None
    words = [_word(p) for p in parts] + ["serve", "--stdio"]
    if remote.home:
        words = ["env", "HUBTUNE_HOME=" + _word(remote.home), *words]
    return " ".join(words)


def _word(text: str) -> str:
    """`text` as one word for the remote's shell: quoted, except a leading `~/`, which
    becomes that machine's $HOME (a quoted `~` is not expanded)."""
    if text.startswith("~/"):
        return '"$HOME"/' + shlex.quote(text[2:])
    return shlex.quote(text)


class RemoteSession:
    """A live connection; `call` sends one hubtune command and returns its answer."""

    def __init__(self, remote, *, local_version: str) -> None:
        self.remote = remote
        self._next = 0
        self._lock = threading.Lock()
        try:
            # errors="replace": bytes that are not UTF-8 are the protocol's problem
            # (one sentence below), not a decoding error that kills the reader thread
            self._proc = subprocess.Popen(
                ssh_argv(remote), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                bufsize=1, start_new_session=True)
        except OSError as exc:
            raise RemoteError(f"Cannot start the ssh client for remote {remote.name} "
                              f"({exc.strerror or exc}); is ssh installed?") from None
        self._lines: queue.Queue = queue.Queue()
        self._errors: deque[str] = deque(maxlen=20)
        """ssh's last lines on stderr, read as they come: a full pipe would stall ssh."""
        self._err_done = threading.Event()
        threading.Thread(target=self._read, daemon=True, name="remote-read").start()
        threading.Thread(target=self._read_errors, daemon=True, name="remote-err").start()
        try:
            hello = self._line(CONNECT_TIMEOUT_S)
            self.version, self.protocol = _check_hello(remote, hello, local_version)
        except BaseException:  # the ssh process is not left running behind a failed open
            self.close()
            raise

    def _read(self) -> None:
        try:
            while line := self._proc.stdout.readline(MAX_LINE_CHARS + 1):
                if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
                    self._lines.put(_TOO_LONG)
                    return
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        finally:
            self._lines.put(None)
            with contextlib.suppress(OSError, ValueError):
                self._proc.stdout.close()

    def _read_errors(self) -> None:
        try:
            while line := self._proc.stderr.readline(4096):
                self._errors.append(line)
        except (OSError, ValueError):
            pass
        finally:
            self._err_done.set()
            with contextlib.suppress(OSError, ValueError):
                self._proc.stderr.close()

    def _line(self, timeout: float) -> dict:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.close(grace=0)
            raise RemoteLost(f"Remote {self.remote.name} did not answer within "
                              f"{timeout:g} s; the connection was closed.") from None
        if line is None:
            raise RemoteLost(f"Remote {self.remote.name} cannot be reached: "
                              f"{self._reason()}")
        if line is _TOO_LONG:
            self.close(grace=0)
            raise RemoteError(f"Remote {self.remote.name} sent a line longer than "
                              f"{MAX_LINE_CHARS:,} characters; the connection was closed.")
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            self.close(grace=0)
            raise RemoteError(f"Remote {self.remote.name} answered with something other "
                              "than hubtune's protocol (is its --hubtune command hubtune, "
                              "and does its shell print text at login?).")
        return message

    def _reason(self) -> str:
        """ssh's own last words (its stderr), as one line."""
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._err_done.wait(timeout=2)
        lines = [line.strip() for line in list(self._errors) if line.strip()
                 and not line.startswith("Warning: Permanently added")]
        return (lines[-1][:300] if lines
                else f"ssh ended with code {self._proc.returncode}") + "."

    def call(self, argv: list[str], *, files: dict[str, str] | None = None,
             timeout: float = REQUEST_TIMEOUT_S,
             on_output: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Run `hubtune ARGV...` there; returns {"exit", "stdout", "error"}. What a
        following command prints as it goes (`runs follow`, `train`) is handed to
        `on_output` as it comes (`timeout` is then per piece)."""
        return self._ask({"argv": [str(a) for a in argv], "files": files or {}}, timeout,
                         on_output)

    def fetch_export(self, run_id: int, write: Callable[[bytes], None], *,
                     timeout: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """Have the remote export its run `run_id` (`hubtune export`) into a folder of
        its own and send it back as an uncompressed tar, handed to `write` piece by piece
        (`timeout` is per piece); returns {"exit", "error", "loader", "config"}."""
        return self._ask({"export": {"run": int(run_id)}}, timeout, on_piece=write)

    def _ask(self, request: dict, timeout: float,
             on_output: Callable[[str], None] | None = None,
             on_piece: Callable[[bytes], None] | None = None) -> dict[str, Any]:
        with self._lock:
            self._next += 1
            request = {"id": self._next, **request}
            self._send(request)
            printed: list[str] = []
            while True:
                answer = self._line(timeout)
                if answer.get("id") != request["id"]:
                    self.close(grace=0)
                    raise RemoteError(f"Remote {self.remote.name} answered out of turn; "
                                      "the connection was closed.")
                if "piece" in answer and on_piece is not None:
                    on_piece(self._decoded(answer["piece"]))
                    continue
                if "chunk" not in answer:
                    return {**answer, "stdout": "".join(printed) + str(answer.get("stdout")
                                                                       or "")}
                if on_output is not None:
                    on_output(str(answer["chunk"]))
                else:  # kept for the answer, as if printed at the end
                    printed.append(str(answer["chunk"]))

    def _decoded(self, piece: Any) -> bytes:
        try:
            return base64.b64decode(str(piece), validate=True)
        except ValueError:
            self.close(grace=0)
            raise RemoteError(f"Remote {self.remote.name} sent a piece of a file that is "
                              "not base64; the connection was closed.") from None

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
                    if not isinstance(sent.get("path"), str):
                        raise RemoteError(f"Remote {self.remote.name} did not keep "
                                          f"{path.name}; send it again.")
                    return sent["path"]

    def ping(self, timeout: float = 10.0) -> bool:
        return self._ask({"ping": True}, timeout).get("pong") is True

    def _send(self, message: dict) -> None:
        stuck = threading.Event()

        def give_up() -> None:  # the write below then fails instead of waiting for ever
            stuck.set()  # (not close(): the blocked write holds the pipe's lock)
            self._kill()

        timer = threading.Timer(SEND_TIMEOUT_S, give_up)
        timer.daemon = True
        timer.start()
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except (OSError, ValueError):
            if stuck.is_set():
                raise RemoteLost(f"Remote {self.remote.name} took nothing sent to it for "
                                  f"{SEND_TIMEOUT_S:g} s; the connection was closed.") from None
            raise RemoteLost(f"Remote {self.remote.name} cannot be reached: "
                              f"{self._reason()}") from None
        finally:
            timer.cancel()

    def close(self, grace: float = 5.0) -> None:
        """End the connection: ssh is given `grace` seconds to end with its input (0: a
        remote that broke the protocol or went silent is not waited for)."""
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:  # a remote that ignores the end of its input
            self._kill()

    def _kill(self) -> None:
        """ssh's whole session (start_new_session), so no child keeps the pipes open; only
        while ssh itself is still there (its id is not yet free for another process)."""
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except OSError:
                self._proc.kill()
        self._proc.wait()

    def __enter__(self) -> RemoteSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_hello(remote, hello: dict, local_version: str) -> tuple[str, int]:
    version, protocol = str(hello.get("hubtune", "?"))[:40], hello.get("protocol")
    if protocol != PROTOCOL:
        raise RemoteError(f"Remote {remote.name} runs hubtune {version} (protocol "
                          f"{str(protocol)[:20]}); this machine runs hubtune {local_version} (protocol "
                          f"{PROTOCOL}): install the same version on both.")
    return version, protocol
