"""The new-run form's Advanced section: a field for every config key the main fields
leave out (tui.new_run_settings), in a collapsible, with a line above it that names
every such key set to other than its default, so a value from a loaded or forked
config (a `data.limit: 600`) is seen even while the section is closed.

Fields are named by their dotted config key, as YAML and `--set` write them.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Collapsible, Input, Label, Select, Static

from tui.formatting import literal
from tui.new_run_settings import ADVANCED, SETTINGS
from tui.safe_text import printable

TITLE = "Advanced settings"


class AdvancedSettings(Vertical):
    def compose(self) -> ComposeResult:
        yield Static("", id="advanced-changed", classes="-hidden")
        with Collapsible(title=TITLE, id="advanced"):
            for key in ADVANCED:
                yield from setting_field(key)

    def values(self) -> dict[str, str]:
        """Dotted key -> the text of each field here."""
        return {key: field_value(self, key) for key in ADVANCED}

    def fill(self, values: dict[str, str]) -> None:
        """Show `values` (dotted key -> text) in the fields here."""
        for key in ADVANCED:
            if key in values:
                show_value(self, key, values[key])

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
        self.query_one(Collapsible).collapsed = False


def setting_field(key: str) -> ComposeResult:
    """Label, field and message box of one setting (also used for the patterns of the
    `modules` freezing policy, which the main form shows)."""
    s = SETTINGS[key]
    yield Label(key, classes="field-label", id=f"l-{s.fid}")
    if s.kind == "choice":
        yield Select([(c, c) for c in s.choices], id=f"f-{s.fid}", allow_blank=False,
                     value=s.default or s.choices[0], compact=True)
    else:
        yield Input(s.default, placeholder=s.hint, id=f"f-{s.fid}", compact=True)
    yield Static("", id=f"e-{s.fid}", classes="field-error -hidden")


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
