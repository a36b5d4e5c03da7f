"""A one-line editor modal: Enter saves, Esc cancels (tags and notes of a run).

The title and the value quote untrusted text: the title is plain text, never markup,
and control characters in either are shown as escapes (a raw one in the Input would
reach the terminal). A value saved unchanged comes back as it was, not escaped. `edit_tags` and `edit_notes`
are the runs screen's t and n: ask, then write through the store.
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
from tui.widgets.footer import KeysFooter


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
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _save(self, event: Input.Submitted) -> None:
        self.dismiss(self.value if event.value == self.shown else event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


def edit_tags(screen, run, saved) -> None:
    """Ask for `run`'s tags (comma-separated) and write them if changed; `saved` then."""
    if run is not None:
        _edit(screen, f"Tags of run #{run.id} (comma-separated)", ", ".join(run.tags),
              "baseline, frozen, lr-sweep", lambda value: screen.store.set_tags(
                  run.id, [t.strip() for t in value.split(",") if t.strip()]), saved)


def edit_notes(screen, run, saved) -> None:
    """Ask for `run`'s note and write it if changed; `saved` then."""
    if run is not None:
        _edit(screen, f"Note on run #{run.id}", run.notes,
              "what this run tried, what it showed",
              lambda value: screen.store.set_notes(run.id, value.strip()), saved)


def _edit(screen, title: str, shown: str, placeholder: str, write, saved) -> None:
    """Ask for tags or a note and `write` them if changed; the store refuses what a table
    cannot show (too long, a control character), and says so in a toast rather than
    ending the app."""
    from store import StoreError

    def save(value: str | None) -> None:
        if value is None or value == shown:
            return
        try:
            write(value)
        except StoreError as exc:
            screen.notify(str(exc), severity="error", timeout=8)
            return
        saved()

    screen.app.push_screen(EditScreen(title, shown, placeholder), save)
