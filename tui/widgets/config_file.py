"""The new-run form's config file row: a path, Load and Save.

Load (the button, Enter in the path or the screen's Ctrl+L) reads a YAML run
config and posts `ConfigFileRow.Loaded` for the form to show; Save writes `config` (set by the screen whenever the form is
valid: attributes down) as YAML, asking before it replaces a file and
never writing inside hubtune's data folder. A problem is one notification.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, Input

from engine.core.errors import HubtuneError
from tui.new_run_form import config_yaml, load_form_config


class ConfigFileRow(Horizontal):
    class Loaded(Message):
        """A config was read from `path`; the form shows it."""

        def __init__(self, config, path: str) -> None:
            super().__init__()
            self.config, self.path = config, path

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = None
        """The form's config while it is valid (engine.core.config.RunConfig): what Save
        writes."""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="config.yaml to load or save", id="config-path", compact=True)
        yield Button("Load", id="load", compact=True)
        yield Button("Save", id="save", compact=True)

    @property
    def path(self) -> str:
        return self.query_one("#config-path", Input).value.strip()

    @on(Button.Pressed, "#load")
    @on(Input.Submitted, "#config-path")
    def load(self) -> None:
        raw = self.path
        if not raw:
            self.notify("Type the path of a YAML config first.", severity="warning")
            self.query_one("#config-path", Input).focus()
            return
        try:
            cfg = load_form_config(raw)
        except HubtuneError as exc:
            self.notify(str(exc), severity="error")
            return
        self.post_message(self.Loaded(cfg, raw))

    @on(Button.Pressed, "#save")
    def save(self) -> None:
        raw = self.path
        if not raw or self.config is None:
            self.notify("Give a path, and fix the form first.", severity="warning")
            return
        text = config_yaml(self.config)
        if not Path(raw).expanduser().exists():
            self._write(raw, text, force=False)
            return
        from tui.screens.confirm import ConfirmScreen

        self.app.push_screen(ConfirmScreen(f"{raw} exists. Replace it?"),
                             lambda yes: self._write(raw, text, force=True) if yes else None)

    def _write(self, raw: str, text: str, *, force: bool) -> None:
        from engine.core.outputs import write_text
        from store import data_dir

        try:
            path = write_text(raw, text, force=force, protected=data_dir())
        except HubtuneError as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"Saved {path}.")
