"""The app in a real terminal: `python -m tui.cli` in a detached tmux session of a given
size, driven by `send-keys` and read back with `capture-pane`, as a user over SSH sees it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")
REPO = Path(__file__).resolve().parents[2]
needs_tmux = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install "
                                                     "tmux)")


class Terminal:
    def __init__(self, socket: str, env: dict[str, str]) -> None:
        self.socket, self.env = socket, env

    def tmux(self, *args: str) -> str:
        return subprocess.run([TMUX, "-S", self.socket, *args], capture_output=True,
                              text=True, env=self.env, timeout=30).stdout

    def lines(self) -> list[str]:
        return self.tmux("capture-pane", "-p").splitlines()

    def type(self, text: str) -> None:
        """`text` as typed, never read as key names."""
        self.tmux("send-keys", "-l", text)

    def keys_until(self, keys: list[str], shown_ok: Callable[[list[str]], bool],
                   timeout: float = 30) -> list[str]:
        """Send `keys` (tmux key names; Esc alone, then the next key: Esc and a key in one
        burst is Alt+key), then wait until the screen's lines pass `shown_ok`."""
        if keys:
            self.tmux("send-keys", *keys)
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if lines and shown_ok(lines):
                return lines
            assert time.monotonic() < deadline, "\n".join(lines)
            time.sleep(0.2)


@contextmanager
def terminal(tmp_path: Path, home: Path, size: tuple[int, int] = (80, 24)) -> Iterator[Terminal]:
    """The app running in a tmux session of `size` over the store in `home`."""
    env = {**os.environ, "TERM": "xterm-256color", "HUBTUNE_HOME": str(home)}
    term = Terminal(str(tmp_path / "tmux.sock"), env)
    term.tmux("-f", "/dev/null", "new-session", "-d", "-x", str(size[0]), "-y", str(size[1]),
              f"cd {REPO} && exec {sys.executable} -m tui.cli")
    # No wait for a meta key after Esc: tmux would otherwise read Esc and the next key
    # within its escape-time (500 ms) as Alt+key on a loaded machine.
    term.tmux("set-option", "-s", "escape-time", "0")
    try:
        yield term
    finally:
        term.tmux("kill-server")
