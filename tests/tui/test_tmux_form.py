"""The new-run form in a real 80x24 terminal (tmux): where the form and its preview
stack, a loaded config's data preview and layer plan are one key away each (#33), and
stay in view while their contents arrive."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

TMUX = shutil.which("tmux")
pytestmark = [pytest.mark.slow,  # a whole app process in a terminal
              pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install "
                                                      "tmux)")]
REPO = Path(__file__).resolve().parents[2]


def test_preview_and_plan_of_a_loaded_config_in_two_keys_at_80x24(tmp_path, tiny_bert,
                                                                   sentiment_csv, hubtune_home):
    cfg = tmp_path / "loaded.yaml"
    cfg.write_text(f"name: stacked-form\nmodel: {{id: {tiny_bert}}}\n"
                   f"data: {{train: {sentiment_csv}, max_length: 32}}\n"
                   "train: {epochs: 1, seed: 7, warmup_ratio: 0.1}\n")
    env = {**os.environ, "TERM": "xterm-256color", "HUBTUNE_HOME": str(hubtune_home)}
    socket = str(tmp_path / "tmux.sock")

    def tmux(*args: str) -> str:
        return subprocess.run([TMUX, "-S", socket, *args], capture_output=True, text=True,
                              env=env, timeout=30).stdout

    def keys_until(keys: list[str], shown_ok, timeout: float = 60) -> str:
        if keys:
            tmux("send-keys", *keys)
        deadline = time.monotonic() + timeout
        while True:
            shown = tmux("capture-pane", "-p")
            if shown_ok(shown):
                return shown
            assert time.monotonic() < deadline, shown
            time.sleep(0.2)

    tmux("-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24",
         f"cd {REPO} && exec {sys.executable} -m tui.cli")
    try:
        keys_until([], lambda s: "No runs yet" in s)
        keys_until(["3"], lambda s: "new run" in s)
        keys_until(["C-l"], lambda s: "Type the path of a YAML config" in s)
        tmux("send-keys", "-l", str(cfg))
        loaded = keys_until(["C-l"], lambda s: "Loaded" in s)
        preview = keys_until(["F2"], lambda s: "rows, " in s and "columns" in s)
        plan = keys_until(["F3"], lambda s: "trainable" in s and "● trains" in s, timeout=120)
    finally:
        tmux("kill-server")
    assert "stacked-form" not in preview.split("rows, ")[0].splitlines()[-1]  # scrolled away
    assert "● trains" in plan and "Loaded" in loaded
