"""Render the README screenshots from the app itself: `python docs/screenshots.py`.

Seeds a throwaway store with example runs (fixed times) and saves an SVG of
each screen into docs/.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "support"))


async def main() -> None:
    os.environ["HUBTUNE_HOME"] = tempfile.mkdtemp(prefix="hubtune-shots-")
    from seed import seed_runs

    from store import RunStore
    from tui.app import make_app

    store = RunStore()
    seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 36)) as pilot:
        for _ in range(100):
            if "digits-vit" in str(app.screen.query_one("#detail-summary").render()):
                break
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        app.save_screenshot(str(HERE / "runs.svg"))


if __name__ == "__main__":
    asyncio.run(main())
