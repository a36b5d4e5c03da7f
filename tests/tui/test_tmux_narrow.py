"""The TUI in a real 80x24 terminal (tmux), as a researcher over SSH sees it: a run with
a long name still shows its status, its name (cut with an ellipsis) and its best
metric, and the footer starts with the keys a newcomer needs (#22)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from store import RunStore

TMUX = shutil.which("tmux")
pytestmark = [pytest.mark.slow,  # a whole app process in a terminal
              pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install "
                                                      "tmux)")]
REPO = Path(__file__).resolve().parents[2]
NAME = "sentiment-baseline-with-frozen-embeddings-and-a-very-long-description"


def test_a_long_named_run_at_80x24(tmp_path, hubtune_home):
    store = RunStore()
    run_id = store.create_run({"model": {"id": "x"}}, name=NAME,
                              model_id="sentence-transformers/all-MiniLM-L6-v2",
                              task="text-classification", dataset="/data/tweets-train.csv")
    store.finish(run_id, "completed", summary={"best_accuracy": 0.8125})
    store.close()
    env = {**os.environ, "TERM": "xterm-256color", "HUBTUNE_HOME": str(hubtune_home)}
    socket = str(tmp_path / "tmux.sock")

    def tmux(*args: str) -> str:
        return subprocess.run([TMUX, "-S", socket, *args], capture_output=True, text=True,
                              env=env, timeout=30).stdout

    tmux("-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24",
         f"cd {REPO} && exec {sys.executable} -m tui.cli")
    try:
        deadline = time.monotonic() + 60
        while True:
            lines = tmux("capture-pane", "-p").splitlines()
            row = next((line for line in lines if line.strip().startswith(f"{run_id} ")), "")
            if "acc 0.812" in row and lines and lines[-1].startswith("? Help"):
                break
            assert time.monotonic() < deadline, "\n".join(lines)
            time.sleep(0.2)
        # The hub opens on its results: `1` leads back at once (#33). In the search box
        # the footer says how to leave it, and Esc then `1` does.
        hub = _keys_until(tmux, ["2"], lambda shown: "hub" in shown[0] and "/ Search" in
                          shown[-1] and shown[-1].startswith("? Help"))
        back = _keys_until(tmux, ["1"], lambda shown: any(
            line.strip().startswith(f"{run_id} ") for line in shown))
        assert "acc 0.812" in "\n".join(back), back
        _keys_until(tmux, ["2"], lambda shown: "hub" in shown[0])
        boxed = _keys_until(tmux, ["/"], lambda shown: "esc Leave box" in shown[-1])
        # Esc alone first: Esc and `1` in one burst is what a terminal sends for Alt+1.
        _keys_until(tmux, ["Escape"], lambda shown: "q Quit" in shown[-1])
        _keys_until(tmux, ["1"], lambda shown: any(
            line.strip().startswith(f"{run_id} ") for line in shown))
    finally:
        tmux("kill-server")
    assert "q Quit" in hub[-1] and "? Help" not in boxed[-1]
    cells = row.split()
    assert cells[:2] == [str(run_id), "completed"]
    assert cells[2].endswith("…") and NAME.startswith(cells[2][:-1]) and len(cells[2]) >= 20
    assert len(row.rstrip()) <= 80
    assert lines[-1].split()[:12] == ["?", "Help", "1", "Runs", "2", "Hub", "3", "New", "run",
                                      "4", "Models", "q"]


def _keys_until(tmux, keys: list[str], shown_ok, timeout: float = 30) -> list[str]:
    """Send `keys`, then wait until the screen passes `shown_ok`; returns its lines."""
    tmux("send-keys", *keys)
    deadline = time.monotonic() + timeout
    while True:
        lines = tmux("capture-pane", "-p").splitlines()
        if lines and shown_ok(lines):
            return lines
        assert time.monotonic() < deadline, "\n".join(lines)
        time.sleep(0.2)
