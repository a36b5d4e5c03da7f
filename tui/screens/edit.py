"""A one-line editor modal: Enter saves, Esc cancels (tags and notes of a run).

The title and the value quote untrusted text: the title is plain text, never markup,
and control characters in either are shown as escapes (a raw one in the Input would
reach the terminal). A value saved unchanged comes back as it was, not escaped.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from tui.formatting import plain
from tui.safe_text import printable


class EditScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, value: str, placeholder: str = "") -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder = title, value, placeholder
        self.shown = printable(value)
        """The value as the Input shows it: newlines and controls as escapes."""

    def compose(self) -> ComposeResult:
        with Vertical(id="edit-box"):
            yield Label(plain(self.title_text, limit=200), id="edit-title")
            yield Input(self.shown, placeholder=self.placeholder, id="edit-input")
            yield Label("[dim]Enter saves · Esc cancels[/dim]")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _save(self, event: Input.Submitted) -> None:
        self.dismiss(self.value if event.value == self.shown else event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
