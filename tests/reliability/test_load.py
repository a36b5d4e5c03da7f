"""Four runs training at once while a TUI reads the store: no "database is locked",
no missing rows, every run completes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from textual.widgets import DataTable

from engine.core.config import RunConfig
from engine.launch.start import start_run
from tui.app import make_app

pytestmark = pytest.mark.slow


async def test_four_runs_and_a_live_tui(store, tiny_bert, sentiment_csv):
    ids = []
    for i in range(4):
        cfg = RunConfig.from_dict({
            "name": f"load-{i}", "model": {"id": str(tiny_bert)},
            "data": {"train": str(sentiment_csv), "max_length": 32},
            "train": {"epochs": 3, "batch_size": 16, "log_every": 1, "seed": i,
                      "checkpoint_every": 10},
        })
        ids.append(start_run(store, cfg))
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 300
        while any(store.get_run(i).status in ("queued", "running") for i in ids):
            assert loop.time() < deadline, "the runs did not finish"
            await pilot.press("down")  # keep the detail pane reading different runs
            await pilot.pause(0.2)
        assert table.row_count == 4
    for run_id in ids:
        run = store.get_run(run_id)
        assert run.status == "completed", run.error
        steps = store.series(run_id, "loss").steps
        assert steps == list(range(1, run.summary["steps"] + 1))
        log = (Path(run.output_dir) / "worker.log").read_text()
        assert "locked" not in log and "Traceback" not in log
