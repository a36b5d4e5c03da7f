"""Focus moving through the new-run form never changes its layout (#22): a compact field
(one row, no border) is marked by a background in the accent colour, not by a border that
would make it three rows tall and push the form down. Real app, 120x40 and 80x24."""

from __future__ import annotations

import pytest

from tests.support.pilot_wait import wait_for
from tui.app import make_app

pytestmark = pytest.mark.slow  # a whole TUI session


def _cue(widget):
    """The style that shows focus: a Select's is on its SelectCurrent."""
    target = widget.query_one("SelectCurrent") if widget.__class__.__name__ == "Select" else widget
    return target.styles.background, target.styles.border_top[0]


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_focus_moving_through_the_form_never_moves_it(store, size):
    app = make_app(store=store)
    async with app.run_test(size=size) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "NewRunScreen")
        form = app.screen.query_one("#run-form")
        form.query_one("AdvancedSettings").expand()  # its fields are built on first opening
        await wait_for(pilot, lambda: form.query_one("AdvancedSettings").built)
        # The main fields, and a few of the Advanced section's (built the same way).
        fields = [w for w in form.query("Input, Button, Select")
                  if w.has_class("-textual-compact") and w.focusable and w.display]
        advanced = [w for w in fields if (w.id or "").startswith("f-a-")]
        fields = [w for w in fields if w not in advanced] + advanced[:3]
        assert len(fields) >= 10
        app.screen.set_focus(None)
        await pilot.pause()
        # Each field's height, and the height of the form's whole (scrollable) content.
        layout = lambda: ([w.size.height for w in fields], form.virtual_size)  # noqa: E731
        before = layout()
        resting = {w: _cue(w) for w in fields}
        for w in fields:
            w.focus()
            await wait_for(pilot, lambda w=w: app.focused is w)
            await pilot.pause()
            assert layout() == before, f"focusing #{w.id} moved the form"
            background, border = _cue(w)
            assert border in ("", "none") and background != resting[w][0], w.id


@pytest.mark.parametrize("size, scroller", [((120, 40), "#run-form"), ((80, 24), "#new-run")])
async def test_page_keys_scroll_the_form_from_a_text_box(store, size, scroller):
    """PgDn / PgUp scroll what holds the focused box (the form; the whole screen where the
    form and the preview stack), and F2 / F3 reach the preview and the layer plan."""
    app = make_app(store=store)
    async with app.run_test(size=size) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "NewRunScreen")
        screen = app.screen
        box = screen.query_one(scroller)
        await wait_for(pilot, lambda: app.focused is not None and app.focused.id == "f-name")
        await wait_for(pilot, lambda: box.max_scroll_y > 5)  # laid out: there is a page
        assert box.scroll_y == 0
        await pilot.press("pagedown")
        await wait_for(pilot, lambda: box.scroll_y > 5)
        assert app.focused.id == "f-name"  # scrolling, not moving the focus
        await pilot.press("pageup")
        await wait_for(pilot, lambda: box.scroll_y == 0)
        await pilot.press("f3")
        await wait_for(pilot, lambda: app.focused.id == "layer-tree")
        plan = screen.query_one("#layer-plan")
        await wait_for(pilot, lambda: screen.region.overlaps(plan.region))
        await pilot.press("f2")
        await wait_for(pilot, lambda: app.focused.id == "preview-table")
