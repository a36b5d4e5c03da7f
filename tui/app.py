"""The hubtune Textual app: wiring only.

`make_app` builds the app for both the CLI and the tests. Nothing here
imports torch: the first paint must not wait for it.
"""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding

from store import RunStore
from tui.screens.help import HelpScreen
from tui.screens.runs import RunsScreen


class HubtuneApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "hubtune"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, store: RunStore) -> None:
        super().__init__()
        self.store = store

    def on_mount(self) -> None:
        self.push_screen(RunsScreen(self.store))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())


def make_app(*, store: RunStore | None = None) -> HubtuneApp:
    """The app over `store` (default: the database in the data directory)."""
    return HubtuneApp(store or RunStore())
