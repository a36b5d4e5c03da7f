"""Switching to the new-run form is quick (#33, item 1): the Advanced section's ~70 fields
are built the first time it opens, holding its values until then, and the footer is not
rebuilt when its keys are what they were. Real app, real store."""

from __future__ import annotations

import pytest
from textual.widgets import Collapsible, Input, Select, Static

from tests.support.pilot_wait import settle, wait_for
from tui.app import make_app
from tui.new_run_settings import ADVANCED
from tui.widgets.advanced_settings import AdvancedSettings
from tui.widgets.footer import KeysFooter

pytestmark = pytest.mark.slow  # whole TUI sessions


async def test_advanced_fields_are_built_on_first_opening_with_what_they_hold(store):
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "NewRunScreen")
        screen = app.screen
        advanced = screen.query_one(AdvancedSettings)
        # Closed: no field of its own, so the screen stays small (it had ~340 widgets).
        assert not advanced.built and not screen.query("#f-a-train-max_steps")
        assert len(list(screen.walk_children())) < 150
        # Values given while closed are held, named above it, and reach the config.
        advanced.fill({"train.max_steps": "7", "train.scheduler": "cosine"})
        changed = screen.query_one("#advanced-changed", Static)
        await wait_for(pilot, lambda: "train.max_steps 7" in str(changed.render()))
        assert "train.scheduler cosine" in str(changed.render())
        assert advanced.values()["train.max_steps"] == "7"
        advanced.fill({"train.scheduler": "not-a-scheduler"})  # a Select would not take it
        assert advanced.values()["train.scheduler"] == "cosine"
        # A bad value opens the section, and its error is under its field once built.
        advanced.fill({"train.warmup_ratio": "2"})
        await wait_for(pilot, lambda: advanced.built, timeout=20)
        assert not screen.query_one("#advanced", Collapsible).collapsed
        box = screen.query_one("#e-a-train-warmup_ratio", Static)
        await wait_for(pilot, lambda: "train.warmup_ratio must be in" in str(box.render()))
        assert screen.query_one("#f-a-train-max_steps", Input).value == "7"
        assert screen.query_one("#f-a-train-scheduler", Select).value == "cosine"
        assert len(advanced.values()) == len(ADVANCED)
        # Built, the fields are what the form reads.
        screen.query_one("#f-a-train-warmup_ratio", Input).value = "0.1"
        screen.query_one("#f-a-train-max_steps", Input).value = "9"
        await wait_for(pilot, lambda: box.has_class("-hidden"))  # checked again: fine
        assert screen.form.read({}).advanced["train.max_steps"] == "9"


async def test_showing_the_form_again_keeps_its_footer_keys(store):
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "NewRunScreen")
        screen = app.screen
        await settle(pilot)
        await pilot.press("escape", "1")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")
        await settle(pilot)
        keys = list(screen.query_one(KeysFooter).children)
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen is screen)
        await settle(pilot)
        # Same keys, same widgets: not removed and mounted again on every switch.
        assert list(screen.query_one(KeysFooter).children) == keys
        assert [k.key for k in keys if hasattr(k, "key")][:6] == ["question_mark", "1", "2",
                                                                  "3", "4", "q"]


async def test_the_form_built_out_of_sight_shows_without_restyling_the_app(store):
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        runs = app.screen
        focused = runs.focused
        app.prepare_form()  # what a real terminal does 0.5 s after start-up
        await settle(pilot)
        # Still on the runs, as they were: the form was built and left.
        assert app.screen is runs and runs.focused is focused and app.current_mode == "runs"
        restyles = []
        real = app.refresh_css
        app.refresh_css = lambda *a, **k: (restyles.append(1), real(*a, **k))
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "NewRunScreen")
        await settle(pilot)
        await pilot.press("escape", "1", "3")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "NewRunScreen")
        await settle(pilot)
        # Textual restyled every screen on each switch to a mode built by a switch.
        assert restyles == []
        assert app.screen.query_one(KeysFooter).children  # shown, and whole
