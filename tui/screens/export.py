"""The export dialog of a completed run (E on the runs screen): what `hubtune export ID
DIR [--onnx [--quantize]] [--push OWNER/NAME --private|--public]` does, from the TUI.

The work runs in a `tui.background` thread worker (export, then ONNX, then the push),
which posts `ExportScreen.Progressed` after each step and `ExportScreen.Finished` at the
end; a failure is the worker's one sentence, shown in the dialog's status line and as
the app's toast. The dialog never imports torch itself: the engine does, in the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, LoadingIndicator, Static

from store import Run
from tui.background import background
from tui.formatting import plain
from tui.widgets.footer import KeysFooter


@dataclass(frozen=True)
class ExportChoice:
    """What the dialog was asked for; a plain value the worker reads."""

    folder: Path
    """Where the exported model goes (a new or empty folder)."""
    onnx: bool = False
    """Also model.onnx, checked against PyTorch."""
    quantize: bool = False
    """With onnx: also the int8 copy."""
    repo: str | None = None
    """Also push the folder to this OWNER/NAME on the hub."""
    private: bool = True
    """Whether a repo the push creates is private."""


def choice_problem(choice: ExportChoice) -> str | None:
    """One sentence on what is wrong with the choice before anything runs, or None."""
    if not str(choice.folder).strip() or str(choice.folder) == ".":
        return "Give the folder to export to."
    if choice.quantize and not choice.onnx:
        return "The int8 copy is of the ONNX model: tick ONNX too."
    if choice.repo is not None and choice.repo.count("/") != 1:
        return f"Push to a repo named OWNER/NAME, not {choice.repo!r}."
    return None


class ExportScreen(ModalScreen[Path | None]):
    """Dismisses with the exported folder once done (None if closed before)."""

    BINDINGS = [Binding("escape", "close", "Close")]

    @dataclass
    class Progressed(Message):
        """A step of the export finished; `text` says what is done."""

        text: str

    @dataclass
    class Finished(Message):
        folder: Path
        """The exported folder."""

    def __init__(self, run: Run) -> None:
        super().__init__()
        self.run = run
        self.done: Path | None = None
        """The folder of a finished export."""
        self._said = ""
        """The status line's text."""

    def compose(self) -> ComposeResult:
        name = self.run.name or f"run-{self.run.id}"
        with Vertical(id="export-box"):
            yield Label(plain(f"Export run #{self.run.id} {name}", limit=120),
                        id="export-title")
            yield Input(str(Path.cwd() / f"{name}-export"), id="export-folder",
                        placeholder="Folder to write the model to")
            with Horizontal(id="export-options"):
                yield Checkbox("ONNX", id="export-onnx")
                yield Checkbox("int8 copy", id="export-int8")
            yield Input("", id="export-repo", placeholder="Push to OWNER/NAME (empty: no push)")
            yield Checkbox("Private repo", True, id="export-private")
            yield LoadingIndicator(id="export-busy", classes="-hidden")
            yield Static("", id="export-status")
            with Horizontal(id="export-buttons"):
                yield Button("Export", id="export-go", variant="primary")
                yield Button("Close (Esc)", id="export-close")
        yield KeysFooter()

    def choice(self) -> ExportChoice:
        repo = self.query_one("#export-repo", Input).value.strip() or None
        return ExportChoice(
            folder=Path(self.query_one("#export-folder", Input).value.strip()).expanduser(),
            onnx=self.query_one("#export-onnx", Checkbox).value,
            quantize=self.query_one("#export-int8", Checkbox).value,
            repo=repo, private=self.query_one("#export-private", Checkbox).value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "export-close":
            self.action_close()
            return
        choice = self.choice()
        problem = choice_problem(choice)
        if problem:
            self._status(problem)
            return
        self._busy(True)
        self._status("Exporting the model…")
        self._export(choice)

    def action_close(self) -> None:
        self.dismiss(self.done)

    @background(what="exporting the run", group="export-run", failed="_failed")
    def _export(self, choice: ExportChoice) -> None:
        from engine.trained.export import LOADER_WORDS, add_onnx, export_model, push_folder
        from store import data_dir

        run = self.run
        folder, loader = export_model(Path(run.output_dir or "") / "model", choice.folder,
                                      config=run.config, summary=run.summary or {},
                                      run_name=run.name or f"run-{run.id}",
                                      protected=data_dir())
        self.post_message(self.Progressed(
            f"Exported to {folder} (load it with {LOADER_WORDS.get(loader, loader)})."
            + (" Writing ONNX…" if choice.onnx else "")))
        if choice.onnx:
            report = add_onnx(folder, loader, run.config, quantize=choice.quantize)
            self.post_message(self.Progressed(
                f"Wrote {report.path.name}, within {report.max_abs_diff:.1e} of PyTorch."
                + (f" Pushing to {choice.repo}…" if choice.repo else "")))
        if choice.repo:
            url = push_folder(folder, choice.repo, private=choice.private)
            self.post_message(self.Progressed(f"Pushed to {url}."))
        self.post_message(self.Finished(folder))

    def on_export_screen_progressed(self, message: Progressed) -> None:
        self._status(message.text)

    def on_export_screen_finished(self, message: Finished) -> None:
        self.done = message.folder
        self._busy(False)
        self._status(f"{self._said} Done.")

    def _failed(self, sentence: str) -> None:
        self._busy(False)
        self._status(sentence)

    def _busy(self, busy: bool) -> None:
        self.query_one("#export-busy").set_class(not busy, "-hidden")
        self.query_one("#export-go", Button).disabled = busy

    def _status(self, text: str) -> None:
        self._said = text
        self.query_one("#export-status", Static).update(plain(text, multiline=True,
                                                              limit=600))
