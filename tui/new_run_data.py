"""The new-run form's data file: read once per path and encoding, its columns offered,
and whether the columns the task needs are picked (what lets Launch go).

`DataFile` holds that state for NewRunScreen (tui/screens/new_run.py) and does the
screen's part in the data pane's reading (tui/widgets/data_preview.py): it asks the
pane to read when the path, encoding or label column changed, offers the columns once
the pane has read the file, and has token and label counts drawn for the columns
picked. Errors go under the form's training-file field.
"""

from __future__ import annotations

from engine.core.errors import HubtuneError
from engine.tasks import REGISTRY
from tui.messages import DataPreviewed
from tui.widgets.data_preview import data_source

NO_COLUMNS = {"text-col": None, "label-col": None}


class DataFile:
    def __init__(self, screen) -> None:
        self.screen = screen
        self.ok = False
        """Whether the file was read and the columns the task needs are picked."""
        self.preview = None
        """The file's preview (engine.data.reader.DataPreview) once read."""
        self.wanted_columns: dict[str, str | None] = dict(NO_COLUMNS)
        """Text and label columns a loaded config named, until the file's header is read."""
        self._asked: str | None = None
        """path|encoding|label column the pane was last asked to read."""
        self._error: str | None = None
        self._missing: dict[str, str] = {}
        """Column fields whose loaded value the file lacks (shown as errors)."""

    def refresh(self) -> None:
        """Have the file read when its path, encoding or label column changed."""
        form = self.screen.form
        raw = form.value("train-file")
        if not raw:
            return
        encoding = form.value("encoding") or "utf-8"
        label = form.value("label-col")
        try:
            path = data_source(form, raw)  # a file, a packaged file or hf: data
        except HubtuneError as exc:
            form.error("train-file", str(exc))
            self.ok = False
            return
        key = f"{path}|{encoding}|{label}"
        if key != self._asked:
            # A new label column only changes the counts; a new file or encoding
            # must be read before Launch is allowed again.
            if self._asked is None or not self._asked.startswith(f"{path}|{encoding}|"):
                self.ok = False
            self._asked = key
            self.screen.pane.read(path, encoding, label)
        else:
            self.check_columns()
            if self._error:
                form.error("train-file", self._error)

    def previewed(self, msg: DataPreviewed) -> None:
        """After the pane showed it: the columns to offer, and whether Launch may go."""
        self.preview, self._error = msg.preview, msg.error
        if msg.error:
            self.ok = False
            self.screen.form.error("train-file", msg.error)
            return
        self._missing = self.screen.form.offer_columns(msg.preview, self.wanted_columns)
        self.wanted_columns = dict(NO_COLUMNS)
        self.ok = True
        self.check_columns()

    def check_columns(self) -> None:
        """The picked columns against the file's; token and label counts for them."""
        p, form, pane = self.preview, self.screen.form, self.screen.pane
        if p is None:
            return
        ok = form.check_columns(p, self._missing)
        text, label = form.value("text-col"), form.value("label-col")
        if text is not None and not getattr(REGISTRY.get(form.value("task")), "images", 0):
            pane.count_tokens_of(p, form.value("model"), form.value("encoding"), text,
                                 form.value("max-length"))
        if label is not None and label == p.label_column:
            pane.show_label_counts(p, label)
        self.ok = ok
