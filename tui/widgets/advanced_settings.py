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

from tui.formatting import literal, plain
from tui.new_run_settings import ADVANCED, SETTINGS
from tui.safe_text import printable

TITLE = "Advanced settings"
FIDS = frozenset(SETTINGS[key].fid for key in ADVANCED)
"""The field ids of this section's fields."""


class AdvancedSettings(Vertical):
    class Changed(Message):
        """A value changed while the fields are not built (no field posts Input.Changed)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.held: dict[str, str] = {key: SETTINGS[key].default for key in ADVANCED}
        """Dotted key -> text, until the fields are built (then the fields hold it)."""
        self.built = False
        """Whether the fields are built and mounted (the section was opened once)."""
        self._building = False
        self._messages: dict[str, tuple[str | None, bool]] = {}
        """Field id -> (message, hint) for a field not built yet."""

    def compose(self) -> ComposeResult:
        yield Static("", id="advanced-changed", classes="-hidden")
        yield Collapsible(title=TITLE, id="advanced")

    @on(Collapsible.Expanded, "#advanced")
    async def build(self) -> None:
        """Build the fields from the values held (once). A Select reads as blank until it
        is mounted, so the held values stay what `values` gives until then."""
        if self._building:
            return
        self._building = True
        widgets = [w for key in ADVANCED for w in setting_field(key, self.held[key])]
        await self.query_one(Collapsible.Contents).mount(*widgets)
        self.built = True
        self.fill(self.held)  # what was filled in while they mounted
        for fid, (message, hint) in self._messages.items():
            show_message(self.query_one(f"#e-{fid}", Static), message, hint)
        self._messages.clear()

    def value(self, key: str) -> str:
        """The text of the field of `key`."""
        return field_value(self, key) if self.built else self.held[key].strip()

    def values(self) -> dict[str, str]:
        """Dotted key -> the text of each field here."""
        return {key: self.value(key) for key in ADVANCED}

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

    def show_message(self, fid: str, message: str | None, hint: bool = False) -> None:
        """`message` under field `fid` (None: none); an error opens the section, so it is
        never hidden."""
        if self.built:
            show_message(self.query_one(f"#e-{fid}", Static), message, hint)
            if message and not hint:
                self.expand()
        elif message:
            self._messages[fid] = (message, hint)
            if not hint:
                self.expand()
        else:
            self._messages.pop(fid, None)

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
        """Open the section (its fields are built as it opens the first time)."""
        self.query_one(Collapsible).collapsed = False


def show_message(box: Static, message: str | None, hint: bool = False) -> None:
    """Show `message` in a field's message `box` (None hides it): in red, or muted as a
    `hint` (what an empty required field wants)."""
    if not message and box.has_class("-hidden"):
        return  # nothing to clear (most of them, at each check of the form)
    if hint and message:
        box.update(f"[$text-muted]{literal(message, 2000, multiline=True)}[/]")
    else:
        # Messages quote names, paths and column names: plain text, never markup.
        box.update(plain(message or "", multiline=True, limit=2000))
    box.set_class(not message, "-hidden")


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
