"""The footer every screen shows: the app's essential keys first, then the screen's own.

Textual's Footer lists keys in binding-chain order (the focused widget, its screen,
then the app), so the keys a newcomer needs most (`?`, `1`-`4`, `q`) came last and were
cut off on a narrow terminal. This one puts them first and leaves out whole keys that
do not fit (never half a label); what it leaves out stays in the help screen (`?`) and
the command palette (Ctrl+P).
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer

from tui.compat import FooterKey

ESSENTIAL_ACTIONS = ("help", "switch_mode('runs')", "switch_mode('hub')", "switch_mode('new')",
                     "switch_mode('models')", "quit")
"""The app's own keys, in the order the footer leads with them."""

TEXT_BOX_KEYS = {"f1": "question_mark", "alt+1": "1"}
"""Keys the footer shows only where a text box takes the plain key beside them."""


class KeysFooter(Footer):
    """A compact footer: essentials first, then as many of the screen's keys as fit."""

    def __init__(self, **kwargs) -> None:
        super().__init__(compact=True, **kwargs)
        self._shown: tuple | None = None
        """What the keys shown now are (`_signature`): a rebuild to the same is skipped."""

    def compose(self) -> ComposeResult:
        widgets = self._keys()
        self._shown = _signature(widgets)
        yield from widgets

    def _keys(self) -> list:
        """The footer's widgets: essentials first."""
        widgets = list(super().compose())
        keys = [w for w in widgets if isinstance(w, FooterKey)
                and not w.has_class("-command-palette")]
        # `?` and the number keys, or F1 and Alt+number where a text box types them.
        plain = {k.key for k in keys}
        spare = {key for key, instead in TEXT_BOX_KEYS.items() if instead in plain}
        keys = [k for k in keys if k.key not in spare]
        widgets = [w for w in widgets if getattr(w, "key", None) not in spare]
        rank = {action: i for i, action in enumerate(ESSENTIAL_ACTIONS)}
        first = sorted((k for k in keys if k.action in rank), key=lambda k: rank[k.action])
        rest = [w for w in widgets if w not in first]
        return first + rest

    def on_resize(self) -> None:
        self.call_after_refresh(self._fit)

    def on_mount(self) -> None:
        self.call_after_refresh(self._fit)

    async def recompose(self) -> None:
        """The bindings changed (focus moved, a screen opened): fit the new keys.

        Textual asks for this at every focus change, several times as a screen is shown
        again, and each rebuild remounts every key; most leave the keys as they were
        (the focus moved between fields), so those are skipped. A dialog's footer may be
        asked after the dialog closed: gone from the screen, it has no keys to show."""
        if not self.is_attached or _signature(self._keys()) == self._shown:
            return
        await super().recompose()
        self.call_after_refresh(self._fit)

    def _fit(self) -> None:
        """Hide the keys past the footer's right edge (the palette key keeps its place)."""
        width = self.size.width
        if not width:
            return
        keys = [k for k in self.query_children(FooterKey)]
        palette = [k for k in keys if k.has_class("-command-palette")]
        room = width - sum(_width(k) for k in palette)
        full = False  # once one key is left out, so are those after it
        for key in keys:
            if key in palette:
                continue
            need = _width(key)
            key.display = not full and need <= room
            full = not key.display
            room -= need if key.display else 0


def _signature(widgets: list) -> tuple:
    """What the footer shows with these widgets: a rebuild with the same one is skipped."""
    return tuple((type(w).__name__, getattr(w, "key", None), getattr(w, "key_display", None),
                  getattr(w, "description", None), getattr(w, "action", None), w.disabled,
                  str(w.tooltip), tuple(sorted(w.classes))) for w in widgets)


def visible_keys(footer: KeysFooter) -> list[str]:
    """The keys the footer shows, in order, as the user sees them (for tests)."""
    return [k.key_display for k in footer.query_children(FooterKey) if k.display]


def _width(key: FooterKey) -> int:
    """Cells the key takes: its label plus its margins and padding."""
    text = key.render()
    margin, padding = key.styles.margin, key.styles.padding
    border = 1 if key.has_class("-command-palette") else 0
    return text.cell_len + margin.left + margin.right + padding.left + padding.right + border
