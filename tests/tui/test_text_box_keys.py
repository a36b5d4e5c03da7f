"""A text box types `?` and the number keys: there the footer offers F1 and Alt+1-4
instead, and both work, so a user is never stuck in a box (#33)."""

from __future__ import annotations

import pytest

from tests.support.pilot_wait import settle, wait_for
from tui.app import make_app
from tui.widgets.footer import KeysFooter, visible_keys

pytestmark = pytest.mark.slow  # whole TUI sessions


def _screen(app) -> str:
    return type(app.screen).__name__


async def test_from_the_hub_search_box_the_footer_keys_do_what_they_say(store, hub_server):
    app = make_app(store=store, hub_endpoint=hub_server.url)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")
        await wait_for(pilot, lambda: _screen(app) == "HubScreen")
        footer = app.screen.query_one(KeysFooter)
        await wait_for(pilot, lambda: visible_keys(footer)[:6] == ["?", "1", "2", "3", "4", "q"])
        await pilot.press("slash")
        await wait_for(pilot, lambda: type(app.screen.focused).__name__ == "Input")
        await settle(pilot)
        # The plain keys would be typed: the footer leads with the ones that work here.
        await wait_for(pilot, lambda: visible_keys(footer)[:2] == ["f1", "alt+1-4"])
        assert "esc" in visible_keys(footer) and "?" not in visible_keys(footer)
        await pilot.press("f1")
        await wait_for(pilot, lambda: _screen(app) == "HelpScreen")
        await pilot.press("escape")
        await wait_for(pilot, lambda: _screen(app) == "HubScreen")
        box = app.screen.focused
        await pilot.press("alt+1")
        await wait_for(pilot, lambda: _screen(app) == "RunsScreen")
        assert box.value == ""  # nothing was typed into the search on the way out
        # Back on the hub the box still has focus; Alt+3 leaves it for the new-run form.
        await pilot.press("alt+2")
        await wait_for(pilot, lambda: _screen(app) == "HubScreen")
        assert app.screen.focused is box
        await pilot.press("alt+3")
        await wait_for(pilot, lambda: _screen(app) == "NewRunScreen")
        assert box.value == ""
