"""A snapshot of the hub screen showing datasets, at 120x40 and 80x24: the switch, the
size filter, a dataset's subsets, splits and features (pytest-textual-snapshot)."""

from __future__ import annotations

import pytest

from store import RunStore
from tests.support.pilot_wait import settle
from tui.app import make_app

pytestmark = pytest.mark.slow  # whole TUI sessions, as tests/tui/test_snapshots.py


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_hub_datasets(snap_compare, size, hub_server, hf_cache):
    async def search(pilot):
        await pilot.press("2", "escape", "t")
        screen = pilot.app.screen
        for _ in range(1200):
            table = screen.query_one("#hub-results")
            summary = str(screen.query_one("#dataset-summary").render())
            info = str(screen.query_one("#dataset-subset-info").render())
            if table.row_count == 3 and "license mit" in summary and "96 rows" in info:
                break
            await pilot.pause(0.05)
        await settle(pilot)

    app = make_app(store=RunStore(), hub_endpoint=hub_server.url)
    assert snap_compare(app, terminal_size=size, run_before=search)
