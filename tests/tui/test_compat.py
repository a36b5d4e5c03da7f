"""Textual's private footer key (tui.compat), exercised for real: if an upgrade moves
`FooterKey` or changes what it carries, this fails naming Textual's version."""

from __future__ import annotations

from importlib.metadata import version

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer

from tui.compat import CHECKED, FOOTER_KEY_FIELDS, PALETTE_CLASS, FooterKey


class _FooterApp(App[None]):
    BINDINGS = [Binding("x", "bell", "Ring"), Binding("q", "quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Footer()


def _fail(what: str) -> str:
    return (f"textual {version('textual')}: {what} (tui/compat.py was checked against "
            f"{CHECKED}); update the adapter and tui/widgets/footer.py.")


async def test_a_footer_is_built_of_footer_keys_that_carry_what_the_footer_reads():
    app = _FooterApp()
    async with app.run_test(size=(80, 5)) as pilot:
        await pilot.pause()
        keys = list(app.query_one(Footer).query_children(FooterKey))
        assert keys, _fail("Footer no longer builds FooterKey children")
        for key in keys:
            missing = [f for f in FOOTER_KEY_FIELDS if not isinstance(getattr(key, f, None), str)]
            assert not missing, _fail(f"FooterKey lost {missing}")
            assert key.render().cell_len > 0, _fail("FooterKey no longer renders its label")
        ours = [(k.key, k.description, k.action) for k in keys
                if not k.has_class(PALETTE_CLASS)]
        # The action as bound: tui.widgets.footer.ESSENTIAL_ACTIONS matches on it.
        assert ours == [("x", "Ring", "bell"), ("q", "Quit", "quit")], _fail(f"keys read {ours}")
        assert [k for k in keys if k.has_class(PALETTE_CLASS)], _fail(
            f"the command palette key lost its {PALETTE_CLASS} class")


async def test_a_mode_screen_marked_current_is_not_restyled_when_shown_again():
    from textual.screen import Screen

    from tui.compat import mark_styles_current

    class _ModesApp(App[None]):
        MODES = {"a": Screen, "b": Screen}

    app = _ModesApp()
    async with app.run_test(size=(40, 5)) as pilot:
        await app.switch_mode("a")
        await app.switch_mode("b")
        await pilot.pause()
        count = getattr(app.screen, "_css_update_count", None)
        assert isinstance(count, int), _fail("Screen._css_update_count is gone")
        assert isinstance(getattr(app, "_css_update_count", None), int), _fail(
            "App._css_update_count is gone")
        mark_styles_current(app.screen)
        restyles = []
        real = app.refresh_css
        app.refresh_css = lambda *a, **k: (restyles.append(1), real(*a, **k))
        await app.switch_mode("a")
        mark_styles_current(app.screen)
        await app.switch_mode("b")
        assert restyles == [], _fail("a screen marked current is still restyled on a switch")
