"""The new-run form's fields: inputs, choices and the error under each.

A view of `tui.new_run_form.NewRunForm`: `read` gives the form as it stands,
`fill` shows one, `error` puts a message under a field. Which tasks and
which columns are offered is set from outside (the model's heads, the data
file's header). Values quoted back into it (a forked run's name, a file's
column names) are the user's own text: shown with controls as escapes.

Every other config key has a field in the Advanced section
(tui/widgets/advanced_settings.py); the patterns of the `modules` freezing
policy show beside the policy. A required field left empty shows a hint in
muted text, never a red error.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Select, Static

from engine.core.config import FREEZE_POLICIES
from tui.formatting import cell, cut, literal
from tui.new_run_form import FIELDS, SELECTS, TASK_CHOICES, UNLABELLED, NewRunForm
from tui.new_run_settings import PROMOTED, SETTINGS
from tui.safe_text import printable
from tui.widgets.advanced_settings import (
    FIDS,
    AdvancedSettings,
    field_value,
    setting_field,
    show_message,
    show_value,
)
from tui.widgets.config_file import ConfigFileRow
from tui.widgets.run_on import RunOn

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
            if fid == "freeze-n":
                with Vertical(id="patterns-row", classes="form-row -hidden"):
                    yield from setting_field("freeze.patterns")
        yield AdvancedSettings(id="advanced-settings", classes="form-row")
        yield Static("", id="e-general", classes="field-error -hidden")
        yield RunOn(id="run-on", classes="form-row")  # hidden while there are no remotes
        with Horizontal(id="start-row"):
            yield Button("Launch (ctrl+r)", id="launch", variant="success", disabled=True)
            # Recorded `queued`: it starts when slots are free (engine.runs.queue).
            yield Button("Queue (ctrl+t)", id="queue", variant="primary", disabled=True)
            # A grid, random or TPE sweep over this config (tui/screens/sweep_dialog.py).
            yield Button("Sweep… (F5)", id="sweep", action="screen.sweep", disabled=True)

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
        """The form as it stands, over `base` (the config it was filled from)."""
        advanced = self.query_one(AdvancedSettings).values()
        advanced.update({key: field_value(self, key) for key in PROMOTED})
        return NewRunForm.from_fields({fid: self.value(fid) for fid in (*FIELDS, *SELECTS)},
                                      base, advanced)

    def fill_settings(self, form: NewRunForm, keys=None) -> None:
        """Show `form`'s other settings (only `keys`, when given)."""
        values = form.advanced_values()
        if keys is not None:
            values = {k: v for k, v in values.items() if k in keys}
        self.query_one(AdvancedSettings).fill(values)
        for key in PROMOTED:
            if key in values:
                show_value(self, key, values[key])

    def take(self, form: NewRunForm, key: str) -> dict:
        """Show what the layer tree changed in `form` (setting `key` and the freezing
        policy); returns the form's base for the screen to keep."""
        self.set_freeze(form.freeze)
        self.fill_settings(form, [key])
        return form.base

    def show_settings_state(self, form: NewRunForm) -> None:
        """The patterns field while the policy is `modules` (or holds some), and the
        line naming the changed advanced settings."""
        patterns = field_value(self, "freeze.patterns")
        self.query_one("#patterns-row").set_class(
            form.freeze != "modules" and not patterns, "-hidden")
        self.query_one(AdvancedSettings).show_changed(form.changed())

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
        self.fill_settings(form)
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
        fields whose wanted column the file lacks (field id -> column).

        A field whose choice this changes posts one `Select.Changed`, so the screen checks
        and plans the form again: a column picked for the file before (`path` of an image
        folder passed through while typing) must not stay in the config when the field
        now shows another."""
        p = preview
        options = [(cell(cut(c, 40)), c) for c in p.columns]
        missing = {}
        for fid, guess in (("text-col", p.text_column), ("label-col", p.label_column)):
            select = self.query_one(f"#f-{fid}", Select)
            current = select.value
            with self.prevent(Select.Changed):  # not the blank set_options passes through
                select.set_options(options)  # this clears the selection
                if wanted[fid] is not None and wanted[fid] not in p.columns:
                    missing[fid] = wanted[fid]  # a loaded config named a wrong column
                else:
                    for choice in (current, wanted[fid], guess):
                        if isinstance(choice, str) and choice in p.columns:
                            select.value = choice
                            break
            if select.value != current:
                select.post_message(Select.Changed(select, select.value))
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

    def error(self, fid: str, message: str | None, *, hint: bool = False) -> None:
        """Show `message` under field `fid` (None hides the box): in red, or muted as a
        `hint` (what an empty required field wants)."""
        if fid in FIDS:  # kept until its field is built; an error opens the section
            self.query_one(AdvancedSettings).show_message(fid, message, hint)
        else:
            show_message(self.query_one(f"#e-{fid}", Static), message, hint)

    def show_messages(self, errors: dict[str, str], hints: dict[str, str]) -> None:
        """Each error under its field, and a hint under each empty required one."""
        for fid, message in errors.items():
            self.error(fid, message)
        for fid, hint in hints.items():
            if fid not in errors:
                self.error(fid, hint, hint=True)

    def clear_errors(self) -> None:
        for fid in (*FIELDS, *SELECTS, *(s.fid for s in SETTINGS.values()), "general"):
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
        """Enable Launch, Queue and Sweep (all start from the same valid form)."""
        for button in self.query("#start-row Button").results(Button):
            button.disabled = not ok
