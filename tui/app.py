"""The hubtune Textual app: wiring only.

`make_app` builds the app for both the CLI and the tests. Nothing here
imports torch: the first paint must not wait for it.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from store import RunStore
from tui.screens.help import HelpScreen
from tui.screens.hub import HubScreen
from tui.screens.runs import RunsScreen


class HubtuneApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "hubtune"
    BINDINGS = [
        Binding("1", "switch_mode('runs')", "Runs"),
        Binding("2", "switch_mode('hub')", "Hub"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, store: RunStore, *, hub_endpoint: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.hub_endpoint = hub_endpoint
        self._modes = {
            "runs": lambda: RunsScreen(self.store),
            "hub": lambda: HubScreen(self.hub_endpoint),
        }

    def on_mount(self) -> None:
        self.switch_mode("runs")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Runs", "Every recorded run, live", lambda: self.switch_mode("runs"))
        yield SystemCommand("Hub", "Search and download hub models",
                            lambda: self.switch_mode("hub"))
        yield SystemCommand("Help", "Keys and what each screen does", self.action_help)


def make_app(*, store: RunStore | None = None, hub_endpoint: str | None = None) -> HubtuneApp:
    """The app over `store` (default: the database in the data directory)."""
    return HubtuneApp(store or RunStore(), hub_endpoint=hub_endpoint)
