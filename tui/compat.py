"""The private parts of Textual the TUI relies on, reached here and nowhere else.

Textual's `Footer` builds one `FooterKey` per binding, but exports neither the class
nor a way to ask a footer for its keys; `tui.widgets.footer` reorders and fits them,
so it needs both the class and its shape (`key`, `key_display`, `description`,
`action`, the `-command-palette` class). tests/tui/test_compat.py builds a footer for
real and fails, naming Textual's version, when an upgrade moves or reshapes it.

Textual also re-reads the whole stylesheet each time a mode's screen is shown until that
screen's count of CSS updates matches the app's, and a screen built by `switch_mode` is
not mounted yet when the count is set, so every switch to it cost a full restyle
(~0.8 s for the new-run form on a busy box). `mark_styles_current` records that a screen
just mounted was styled with the stylesheet as it is.

Checked against Textual 8.2.8.
"""

from __future__ import annotations

from textual.widgets._footer import FooterKey

CHECKED = "textual 8.2.8"
"""The version the adapter was checked against (the test names it when it fails)."""

FOOTER_KEY_FIELDS = ("key", "key_display", "description", "action")
"""What `tui.widgets.footer` reads from each key."""

PALETTE_CLASS = "-command-palette"
"""The class Textual gives the footer's command-palette key."""



def mark_styles_current(screen) -> None:
    """Say that `screen`, mounted, was styled with the app's stylesheet as it is now (a
    later theme change still restyles it: that raises the app's count)."""
    screen._css_update_count = screen.app._css_update_count


__all__ = ["CHECKED", "FOOTER_KEY_FIELDS", "PALETTE_CLASS", "FooterKey", "mark_styles_current"]
