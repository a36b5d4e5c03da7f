"""Case: how late a remote run's new metric point reaches this machine's TUI (#37).

A run on "the remote" (this machine over a real sshd on loopback, tests/support/sshd.py,
with a HUBTUNE_HOME of its own) is recorded as running by this process, which then
writes one new loss point at a time, as its worker would. The figure is the time from
the write to the point being drawn in the run panel's loss curve of a TUI on this
machine that has the remote's run selected (polled over SSH: tui/remote_runs.py,
tui/remote_detail.py). The peer is the same on the remote's own TUI (the runs screen
over the remote's store). Both are whole Textual apps run headless (`run_test`); each
point is written at a random moment of the poll cycle, sessions alternate, medians.

Target (docs/DESIGN.md): within 1 s more than on the remote's own TUI.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result

SAMPLES_PER_SESSION = 4
TIMEOUT_S = 30.0


def run(repeats: int = 5) -> list[Result]:
    sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests.support
    from tests.support.sshd import start_sshd

    root = Path(tempfile.mkdtemp(prefix="hubtune-bench-remote-"))
    server = start_sshd(root / "sshd")
    name = "remote latency"
    what = "s from a new metric point to the local TUI's curve"
    if server is None:
        return [Result(name, what, None, notes="skipped: no sshd here "
                                               "(apt-get install openssh-server)")]
    try:
        own, far = _measure(root, server, repeats)
    finally:
        server.stop()
    ours, peer = statistics.median(far), statistics.median(own)
    delta = ours - peer
    return [Result(
        name, what, ours, peer, "the remote's own TUI", "s", "<= peer + 1 s",
        delta <= 1.0,
        notes=f"delta {delta:+.2f} s; {len(far)} points each over loopback ssh; local "
              f"TUI p90 {_p90(far):.2f} s, own TUI p90 {_p90(own):.2f} s",
        extra={"remote": far, "own": own})]


def _p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)]


def _measure(root: Path, server, repeats: int) -> tuple[list[float], list[float]]:
    from store import RunStore
    from store.remotes import Remote, add_remote

    os.environ["HUBTUNE_SSH_COMMAND"] = server.ssh_command
    os.environ["HUBTUNE_HOME"] = str(root / "local")
    far_home = root / "remote"
    there = RunStore(far_home / "hubtune.db")
    run_id = there.create_run({"model": {"id": "m"}, "head": {"task": "text-classification"}},
                              name="bench-remote", model_id="m",
                              task="text-classification", dataset="d")
    there.claim(run_id, there.get_run(run_id).lease, pid=os.getpid(),
                host=socket.gethostname(), env={})
    there.log_metrics(run_id, [(0, 0.0, "total_steps", 1e6, time.time())])
    here = RunStore()
    hubtune = str(Path(sys.executable).parent / "hubtune")
    add_remote(here, Remote("box", "127.0.0.1", server.user, server.port, hubtune,
                            str(far_home)))
    writer = _Writer(there, run_id)
    own: list[float] = []
    far: list[float] = []
    for _ in range(repeats):
        own += asyncio.run(_session(RunStore(far_home / "hubtune.db"), str(run_id), writer))
        far += asyncio.run(_session(here, f"box:{run_id}", writer))
    return own, far


class _Writer:
    """Writes the run's next loss point, as its worker would, and says which step."""

    def __init__(self, store, run_id: int) -> None:
        self.store, self.run_id, self.step = store, run_id, 0

    def write(self) -> int:
        self.step += 1
        self.store.log_metrics(self.run_id, [(self.step, 0.0, "loss", 1.0 / self.step,
                                              time.time())])
        self.store.heartbeat(self.run_id)
        return self.step


async def _session(store, key: str, writer: _Writer) -> list[float]:
    """One TUI over `store` with the run `key` selected: the delay of each new point."""
    from textual.widgets import DataTable

    from tui.app import make_app
    from tui.widgets.chart import LineChart

    app = make_app(store=store)
    out = []
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await _until(pilot, lambda: table.is_valid_row_index(0) and _holds(table, key))
        table.move_cursor(row=table.get_row_index(key))
        chart = app.screen.query_one("#loss-curve", LineChart)

        def last_step() -> int:
            return chart.series[0].steps[-1] if chart.series and chart.series[0].steps else -1

        first = writer.write()  # the panel is following the run before timing starts
        await _until(pilot, lambda: last_step() >= first)
        for _ in range(SAMPLES_PER_SESSION):
            await asyncio.sleep(random.uniform(0.0, 1.0))  # any moment of the poll cycle
            began = time.perf_counter()
            step = writer.write()
            await _until(pilot, lambda s=step: last_step() >= s)
            out.append(time.perf_counter() - began)
    return out


def _holds(table, key: str) -> bool:
    try:
        table.get_row_index(key)
    except Exception:
        return False
    return True


async def _until(pilot, predicate) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the TUI did not show the point in time")
        await pilot.pause(0.005)
