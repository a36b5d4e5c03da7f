"""Focus moving through the new-run form never changes its layout (#22): a compact field
(one row, no border) is marked by a background in the accent colour, not by a border that
would make it three rows tall and push the form down. Real app, 120x40 and 80x24."""

from __future__ import annotations

import pytest
from pilot_wait import wait_for

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
