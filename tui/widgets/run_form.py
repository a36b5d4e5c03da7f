"""The new-run form's fields: inputs, choices and the error under each.

A view of `tui.new_run_form.NewRunForm`: `read` gives the form as it stands,
`fill` shows one, `error` puts a message under a field. Which tasks and
which columns are offered is set from outside (the model's heads, the data
file's header). Values quoted back into it (a forked run's name, a file's
column names) are the user's own text: shown with controls as escapes.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from engine.core.config import FREEZE_POLICIES
from tui.formatting import cell, cut, literal, plain
from tui.new_run_form import FIELDS, SELECTS, TASK_CHOICES, UNLABELLED, NewRunForm
from tui.safe_text import printable
from tui.widgets.config_file import ConfigFileRow

DEFAULTS = {fid: value for fid, value in NewRunForm().fields().items() if fid in FIELDS}
"""What a text field holds in a new form."""
COLUMN_FIELDS = ("text-col", "label-col")


class RunForm(VerticalScroll):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.task_options: list[str] = []
        """The tasks offered once the model's heads were read (empty: every task)."""
        self.length_markup: str | None = None
        """What the max-length note box shows when it shows the plan's notice."""

    def compose(self) -> ComposeResult:
        yield ConfigFileRow(classes="form-row")
        for fid, (_, label, placeholder) in FIELDS.items():
            if fid == "freeze-n":
                yield from self._select_field("task")
                yield from self._select_field("freeze")
            if fid == "encoding":
                yield from self._select_field("text-col")
                yield from self._select_field("label-col")
            yield Label(label, classes="field-label")
            field = Input(DEFAULTS[fid], placeholder=placeholder, id=f"f-{fid}", compact=True)
            if fid == "train-file":
                with Horizontal(classes="form-row"):
                    yield field
                    yield Button("Browse", id="browse", compact=True)
            else:
                yield field
            yield Static("", id=f"e-{fid}", classes="field-error -hidden")
        yield Static("", id="e-general", classes="field-error -hidden")
        with Horizontal(id="start-row"):
            yield Button("Launch (ctrl+r)", id="launch", variant="success", disabled=True)
            # Recorded `queued`: it starts when slots are free (engine.queue).
            yield Button("Queue (ctrl+t)", id="queue", variant="primary", disabled=True)

    def _select_field(self, fid: str) -> ComposeResult:
        _, label = SELECTS[fid]
        options = {"task": TASK_CHOICES, "freeze": FREEZE_POLICIES}.get(fid, ())
        yield Label(label, classes="field-label")
        yield Select([(o, o) for o in options], id=f"f-{fid}", allow_blank=fid in
                     COLUMN_FIELDS, value=options[0] if options else Select.NULL,
                     prompt="pick after the data loads", compact=True)
        yield Static("", id=f"e-{fid}", classes="field-error -hidden")

    # -- values ---------------------------------------------------------------

    def value(self, fid: str) -> str | None:
        """A text field's text (stripped), or a choice (None: nothing picked)."""
        if fid in FIELDS:
            return self.query_one(f"#f-{fid}", Input).value.strip()
        value = self.query_one(f"#f-{fid}", Select).value
        return value if isinstance(value, str) else None

    def read(self, base: dict) -> NewRunForm:
        """The form as it stands, over `base` (the settings it has no field for)."""
        return NewRunForm.from_fields({fid: self.value(fid) for fid in (*FIELDS, *SELECTS)},
                                      base)

    def fill(self, form: NewRunForm) -> None:
        """Show `form`'s text fields, task and freezing (columns wait for the file)."""
        for fid, value in form.fields().items():
            if fid in FIELDS:
                # An Input draws its value as it is: controls (a forked run's name) as escapes.
                self.query_one(f"#f-{fid}", Input).value = printable(value or "")
        task = self.query_one("#f-task", Select)
        with self.prevent(Select.Changed):  # every task again, until the model is read
            task.set_options([(t, t) for t in TASK_CHOICES])
        self.task_options = []
        task.value = form.task
        self.query_one("#f-freeze", Select).value = form.freeze
        for fid in COLUMN_FIELDS:
            select = self.query_one(f"#f-{fid}", Select)
            if select.value not in (Select.NULL, None) and select.value not in (
                    form.text_col, form.label_col):
                select.clear()

    def set_freeze(self, policy: str | None) -> None:
        self.query_one("#f-freeze", Select).value = policy

    def offer_tasks(self, offered: list[str]) -> bool:
        """Offer only the `offered` tasks (the first replaces a task that no longer fits);
        False when they are already what is offered."""
        if offered == self.task_options:
            return False
        self.task_options = offered
        select = self.query_one("#f-task", Select)
        current = select.value
        with self.prevent(Select.Changed):
            select.set_options([(t, t) for t in offered])
            select.value = current if current in offered else offered[0]
        return True

    def offer_columns(self, preview, wanted: dict[str, str | None]) -> dict[str, str]:
        """Offer `preview`'s columns for text and label, keeping what the user picked,
        else what a loaded config named (`wanted`), else the preview's guess. Returns the
        fields whose wanted column the file lacks (field id -> column)."""
        p = preview
        options = [(cell(cut(c, 40)), c) for c in p.columns]
        missing = {}
        for fid, guess in (("text-col", p.text_column), ("label-col", p.label_column)):
            select = self.query_one(f"#f-{fid}", Select)
            current = select.value
            with self.prevent(Select.Changed):
                select.set_options(options)  # this clears the selection
                if wanted[fid] is not None and wanted[fid] not in p.columns:
                    missing[fid] = wanted[fid]  # a loaded config named a wrong column
                    continue
                for choice in (current, wanted[fid], guess):
                    if isinstance(choice, str) and choice in p.columns:
                        select.value = choice
                        break
        return missing

    def check_columns(self, preview, missing: dict[str, str]) -> bool:
        """Whether the columns the task needs are picked; marks those that are not, and
        forgets a missing column once its field is picked."""
        needed = ["text-col"] if self.value("task") in UNLABELLED else COLUMN_FIELDS
        name = Path(preview.path).name
        ok = True
        for fid in needed:
            if self.value(fid) is not None:
                missing.pop(fid, None)
            elif fid in missing:
                self.error(fid, f"{name} has no column {missing[fid]!r}; pick one of "
                                f"{', '.join(preview.columns)}.")
                ok = False
            else:
                self.error(fid, f"Pick a column of {name}.")
                ok = False
        return ok

    @on(Button.Pressed, "#browse")
    def browse(self) -> None:
        """Pick the training file (or image folder) from a directory tree."""
        from tui.screens.file_picker import FilePickerScreen

        field = self.query_one("#f-train-file", Input)
        raw = field.value.strip()
        start = Path(raw).expanduser() if raw and not raw.startswith("pkg:") else None

        def chosen(path: Path | None) -> None:
            if path is not None:
                field.value = str(path)
                field.focus()

        self.app.push_screen(FilePickerScreen(start), chosen)

    # -- messages ---------------------------------------------------------------

    def error(self, fid: str, message: str | None) -> None:
        """Show `message` under field `fid` (None hides the box)."""
        box = self.query_one(f"#e-{fid}", Static)
        # Messages quote names, paths and column names: plain text, never markup.
        box.update(plain(message or "", multiline=True, limit=2000))
        box.set_class(not message, "-hidden")

    def clear_errors(self) -> None:
        for fid in (*FIELDS, *SELECTS, "general"):
            self.error(fid, None)

    def show_length_note(self, note: str | None) -> None:
        """Under Max tokens: the plan's notice that it is clamped to the model's positions
        (engine.modeling.lengths.effective_max_length, the check the run makes)."""
        box = self.query_one("#e-max-length", Static)
        markup = f"[$warning]{literal(note)}[/]" if note else None
        ours = box.content == self.length_markup  # not an error message
        if box.has_class("-hidden") or ours:  # an error in the field comes first
            box.update(markup or "")
            box.set_class(not markup, "-hidden")
        self.length_markup = markup

    def allow_launch(self, ok: bool) -> None:
        """Enable Launch and Queue (both start from the same valid form)."""
        for button in self.query("#start-row Button").results(Button):
            button.disabled = not ok
