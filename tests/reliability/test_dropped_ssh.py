"""A dropped SSH connection: the TUI runs in a real terminal (tmux), starts a run,
and the terminal is killed mid-run. The run must finish with every metric, and a
new TUI must show it."""

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
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install "
                                                      "tmux); .ci/run installs it")]
REPO = Path(__file__).resolve().parents[2]


class Terminal:
    """A tmux server of the test's own (its own socket), holding one window."""

    def __init__(self, tmp: Path, env: dict) -> None:
        self.socket = str(tmp / "tmux.sock")
        self.env = env

    def tmux(self, *args: str) -> str:
        out = subprocess.run([TMUX, "-S", self.socket, *args], capture_output=True, text=True,
                             env=self.env, timeout=30)
        return out.stdout

    def start(self, command: str) -> None:
        self.tmux("-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", command)

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-l", text)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen()
            if text in shown:
                return shown
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen shows:\n{self.screen()}")

    def pid(self) -> int:
        return int(self.tmux("list-panes", "-F", "#{pane_pid}").split()[0])

    def kill(self) -> None:
        self.tmux("kill-server")  # SIGHUP to everything in the terminal, as sshd does


def child_of(pid: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise AssertionError("make never started the app")


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] == "Z"
    except FileNotFoundError:
        return True


def test_run_survives_the_terminal_and_a_new_tui_shows_it(tmp_path, tiny_bert, sentiment_csv,
                                                         hubtune_home):
    cfg = tmp_path / "long.yaml"
    cfg.write_text(f"name: survives-hangup\nmodel: {{id: {tiny_bert}}}\n"
                   f"data: {{train: {sentiment_csv}, max_length: 32}}\n"
                   "train: {epochs: 120, batch_size: 16, log_every: 1, learning_rate: 1.0e-3,"
                   " eval_every: 400}\n")
    env = os.environ.copy()
    env.update(TERM="xterm-256color", HUBTUNE_HOME=str(hubtune_home))
    term = Terminal(tmp_path, env)
    app = f"{sys.executable} -m tui.cli"
    # Started the way `make run` starts it: make is the terminal's controlling process
    # and does not pass SIGHUP on, so the app must notice the dead terminal itself.
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"run:\n\tcd {REPO} && exec {app}\n")
    term.start(f"exec make -s -f {makefile} run")
    tui_pid = child_of(term.pid())
    try:
        term.wait_for("No runs yet")
        term.keys("3")
        term.wait_for("Training data")
        term.keys("C-l")  # with no path yet, this puts the cursor in the config-path box
        term.wait_for("Type the path of a YAML config")  # and says so: the box has focus
        term.type(str(cfg))
        term.keys("C-l")
        term.wait_for("survives-hangup")
        store = RunStore()
        deadline = time.monotonic() + 60
        while "Launch" in term.screen() and store.count_runs() == 0:
            term.keys("C-r")
            time.sleep(1.0)
            assert time.monotonic() < deadline, term.screen()
        run_id = store.list_runs()[0].id
        while len(store.series(run_id, "loss")) < 20:
            assert time.monotonic() < deadline + 60, "training never started"
            time.sleep(0.2)
        assert store.get_run(run_id).status == "running"
    finally:
        term.kill()  # the SSH connection drops

    # The TUI itself must not outlive its terminal (spinning on a dead tty).
    quit_by = time.monotonic() + 15
    while not gone(tui_pid):
        assert time.monotonic() < quit_by, "the TUI kept running after its terminal died"
        time.sleep(0.2)

    deadline = time.monotonic() + 300
    while store.get_run(run_id).status == "running":
        assert time.monotonic() < deadline, "the run did not finish after the hangup"
        time.sleep(0.5)
    run = store.get_run(run_id)
    assert run.status == "completed", run.error
    steps = store.series(run_id, "loss").steps
    assert steps == list(range(1, run.summary["steps"] + 1))  # contiguous, none lost

    term2 = Terminal(tmp_path / "again", env)
    (tmp_path / "again").mkdir()
    term2.start(f"cd {REPO} && exec {app}")
    try:
        shown = term2.wait_for("survives-hangup")
        assert "completed" in shown
    finally:
        term2.kill()
