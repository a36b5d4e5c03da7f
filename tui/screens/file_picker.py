"""A modal file picker for data files: a directory tree showing folders and the
formats hubtune reads, nothing else.

Enter opens a folder or picks a file; `f` picks the highlighted folder (an
image folder with one sub-folder per class); Backspace climbs to the parent
folder; Esc cancels. Dismisses with the chosen path, or None.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Label, Static

from tui.formatting import literal
from tui.safe_text import printable
from tui.widgets.footer import KeysFooter

DATA_SUFFIXES = frozenset({".csv", ".tsv", ".jsonl", ".json", ".parquet", ".conll", ".conllu",
                           ".bio", ".txt"})


class DataTree(DirectoryTree):
    """Folders and data files only; hidden entries left out."""

    def process_label(self, label):
        """A file name as written: controls in it (a name may hold ESC or a newline)
        shown as escapes, never sent to the terminal; never read as markup."""
        return Text(printable(label.plain if isinstance(label, Text) else label))

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".")
                and (p.is_dir() or p.suffix.lower() in DATA_SUFFIXES)]


def shown(path: Path) -> str:
    """A path as a user reads it: under the home folder as ~/..."""
    try:
        return literal(str(Path("~") / Path(path).relative_to(Path.home())))
    except ValueError:
        return literal(str(path))


class FilePickerScreen(ModalScreen[Path | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("f", "pick_folder", "Pick folder"),
        Binding("backspace", "parent", "Parent folder"),
    ]

    def __init__(self, start: Path | None = None, title: str = "Pick a data file") -> None:
        super().__init__()
        start = (start or Path.cwd()).expanduser()
        if not start.is_dir():
            start = start.parent if start.parent.is_dir() else Path.cwd()
        self.root = start.resolve()
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="picker-box"):
            yield Label(self.title_text, id="picker-title")
            yield Static(shown(self.root), id="picker-path")
            yield DataTree(self.root, id="picker-tree")
            yield Label("[dim]Enter: open / pick · f: pick the folder (images) · "
                        "Backspace: up · Esc: cancel[/dim]", id="picker-hint")
        yield KeysFooter()

    def on_mount(self) -> None:
        tree = self.query_one(DataTree)
        tree.show_root = False  # the folder's path is shown above the tree
        tree.focus()

    @on(DirectoryTree.FileSelected)
    def _file(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.dismiss(Path(event.path))

    @on(DataTree.NodeHighlighted)
    def _highlighted(self, event) -> None:
        entry = getattr(event.node, "data", None)
        if entry is not None:
            self.query_one("#picker-path", Static).update(shown(entry.path))

    def action_pick_folder(self) -> None:
        node = self.query_one(DataTree).cursor_node
        entry = getattr(node, "data", None)
        path = entry.path if entry is not None else self.root
        self.dismiss(Path(path) if Path(path).is_dir() else Path(path).parent)

    def action_parent(self) -> None:
        parent = self.root.parent
        if parent == self.root:
            return
        self.root = parent
        tree = self.query_one(DataTree)
        tree.path = parent
        self.query_one("#picker-path", Static).update(shown(parent))

    def action_cancel(self) -> None:
        self.dismiss(None)
