"""The new-run form's Advanced section: a field for every config key the main fields
leave out (tui.new_run_settings), in a collapsible, with a line above it that names
every such key set to other than its default, so a value from a loaded or forked
config (a `data.limit: 600`) is seen even while the section is closed.

Its ~70 fields (some 230 widgets) are built the first time the section opens, not
with the form: every widget on a screen is restyled each time the screen is shown
again, and these made switching to the form take most of a second. Until then the
section holds its values as text (`values`, `fill`), and builds its fields from them.

Fields are named by their dotted config key, as YAML and `--set` write them.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Collapsible, Input, Label, Select, Static

from tui.formatting import literal
from tui.new_run_settings import ADVANCED, SETTINGS
from tui.safe_text import printable

TITLE = "Advanced settings"
FIDS = {SETTINGS[key].fid: key for key in ADVANCED}
"""Field id -> dotted key, for the fields of this section."""


class AdvancedSettings(Vertical):
    class Changed(Message):
        """A value changed while the fields are not built (no field posts Input.Changed)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.held: dict[str, str] = {key: SETTINGS[key].default for key in ADVANCED}
        """Dotted key -> text, while the fields are not built (then the fields hold it)."""
        self.built = False
        """Whether the fields exist (the section was opened once)."""

    def compose(self) -> ComposeResult:
        yield Static("", id="advanced-changed", classes="-hidden")
        yield Collapsible(title=TITLE, id="advanced")

    @on(Collapsible.Expanded, "#advanced")
    def build(self) -> None:
        """Build the fields from the values held (once): mounted at once, so they can be
        queried and read as soon as this returns."""
        if self.built:
            return
        self.built = True
        widgets = [w for key in ADVANCED for w in setting_field(key, self.held[key])]
        self.query_one(Collapsible.Contents).mount(*widgets)

    def values(self) -> dict[str, str]:
        """Dotted key -> the text of each field here."""
        if not self.built:
            return {key: text.strip() for key, text in self.held.items()}
        return {key: field_value(self, key) for key in ADVANCED}

    def fill(self, values: dict[str, str]) -> None:
        """Show `values` (dotted key -> text) in the fields here."""
        if not self.built:
            before = dict(self.held)
            for key, text in values.items():
                if key in self.held:
                    self.held[key] = held_text(key, text, self.held[key])
            if self.held != before:
                self.post_message(self.Changed())
            return
        for key in ADVANCED:
            if key in values:
                show_value(self, key, values[key])

    def error(self, fid: str, message: str | None) -> Static | None:
        """The message box of field `fid`, to show `message` in; a message opens the
        section (an error is never hidden). None when there is nothing to clear."""
        if message:
            self.expand()
        elif not self.built:
            return None
        return self.query_one(f"#e-{fid}", Static)

    def show_changed(self, changed: dict[str, str]) -> None:
        """Name the settings here that differ from a new form's, above the section."""
        shown = [f"{k} {v}" for k, v in changed.items() if k in ADVANCED]
        box = self.query_one("#advanced-changed", Static)
        text = ("[$text-muted]Advanced, changed:[/] " + literal(" · ".join(shown), 600)
                if shown else "")
        if text != getattr(box, "_shown", None):
            box._shown = text  # type: ignore[attr-defined]
            box.update(text)
            box.set_class(not shown, "-hidden")
        self.query_one(Collapsible).title = (f"{TITLE} ({len(shown)} changed)" if shown
                                             else TITLE)

    def expand(self) -> None:
        self.build()
        self.query_one(Collapsible).collapsed = False


def setting_field(key: str, value: str | None = None) -> ComposeResult:
    """Label, field and message box of one setting, showing `value` (default: the
    setting's default); also used for the patterns of the `modules` freezing policy,
    which the main form shows."""
    s = SETTINGS[key]
    text = s.default if value is None else value
    yield Label(key, classes="field-label", id=f"l-{s.fid}")
    if s.kind == "choice":
        choice = text if text in s.choices else (s.default or s.choices[0])
        yield Select([(c, c) for c in s.choices], id=f"f-{s.fid}", allow_blank=False,
                     value=choice, compact=True)
    else:
        # An Input draws its value as it is: controls (a forked run's patterns) as escapes.
        yield Input(printable(text), placeholder=s.hint, id=f"f-{s.fid}", compact=True)
    yield Static("", id=f"e-{s.fid}", classes="field-error -hidden")


def held_text(key: str, text: str, before: str) -> str:
    """What a field of `key` would hold once shown `text` (it held `before`): a choice
    that is not offered is not taken; typed text is shown with controls as escapes."""
    s = SETTINGS[key]
    if s.kind == "choice":
        return text if text in s.choices else before
    return printable(text)


def field_value(root, key: str) -> str:
    widget = root.query_one(f"#f-{SETTINGS[key].fid}")
    if isinstance(widget, Select):
        value = widget.value
        return value if isinstance(value, str) else ""
    return widget.value.strip()


def show_value(root, key: str, text: str) -> None:
    widget = root.query_one(f"#f-{SETTINGS[key].fid}")
    if isinstance(widget, Select):
        if text in SETTINGS[key].choices:
            widget.value = text
        return
    # An Input draws its value as it is: controls (a forked run's patterns) as escapes.
    widget.value = printable(text)
