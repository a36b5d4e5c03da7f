"""The new-run screen: a form for a run config, validated as you type.

Every field is checked by the same config dataclasses the CLI uses, and the
data file is previewed (columns, first rows, label counts) in a thread
worker. An error appears under the field it concerns, and Launch stays
disabled until there is none. Launch records the run and starts its worker
in its own process session, then shows it on the runs screen.
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.timer import Timer
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Select, Static

from engine.core.config import FREEZE_POLICIES, TASKS, RunConfig, load_config
from engine.core.errors import HubtuneError
from tui.formatting import cell, cut, literal, plain
from tui.messages import DataPreviewed, ModelIdsListed
from tui.safe_text import has_control, printable
from tui.widgets.layer_plan import LayerPlan

TASK_CHOICES = ("text-classification", *(t for t in TASKS if t != "text-classification"))
"""The default first: a new form starts as the most common fine-tune."""
UNLABELLED = ("masked-lm", "causal-lm", "feature-extraction", "question-answering")
"""Tasks whose data has no label column to pick."""

# field id -> (dotted config key, label, placeholder)
FIELDS = {
    "name": ("name", "Name", "my-run"),
    "model": ("model.id", "Model", "org/name, a folder, pkg:module or run:ID; → completes"),
    "train-file": ("data.train", "Training data", "data/train.csv"),
    "encoding": ("data.encoding", "Encoding", "utf-8"),
    "val-split": ("data.validation_split", "Validation split", "0.1"),
    "max-length": ("data.max_length", "Max tokens", "128"),
    "epochs": ("train.epochs", "Epochs", "3"),
    "batch": ("train.batch_size", "Batch size", "32"),
    "lr": ("train.learning_rate", "Learning rate", "5e-5"),
    "freeze-n": ("freeze.n", "Blocks to freeze", "0"),
    "seed": ("train.seed", "Seed", "42"),
}
SELECTS = {
    "task": ("head.task", "Task"),
    "freeze": ("freeze.policy", "Freezing"),
    "text-col": ("data.text_column", "Text column"),
    "label-col": ("data.label_column", "Label column"),
}
DEFAULTS = {"encoding": "utf-8", "val-split": "0.1", "max-length": "128", "epochs": "3",
            "batch": "32", "lr": "5e-5", "freeze-n": "0", "seed": "42"}


class NewRunScreen(Screen):
    """Configure a fine-tune and launch it."""

    BINDINGS = [
        Binding("ctrl+l", "load", "Load YAML"),
        Binding("ctrl+s", "save", "Save YAML"),
        Binding("ctrl+r", "launch", "Launch"),
        Binding("ctrl+o", "browse", "Pick file"),
        Binding("escape", "leave_field", "Leave field", show=False),
    ]

    def __init__(self, store) -> None:
        super().__init__()
        self.store = store
        self.config: RunConfig | None = None
        """The config as the form stands, when it is valid."""
        self.data_ok = False
        self._timer: Timer | None = None
        self._previewed: str | None = None
        self._preview_error: str | None = None
        # What the engine thread was last asked for (see _in_engine).
        self._heads_for: str | None = None
        self._task_options: list[tuple[str, str]] = []
        self._planned: str | None = None
        self._length_key: tuple | None = None
        self.lengths = None
        self.parent_id: int | None = None
        """The run this form was forked from (recorded as the new run's parent)."""
        self.preview = None
        """The data file's preview (engine.data.reader.DataPreview) once read."""
        self._base: dict = {}
        """Config keys the form has no field for (from a loaded file or a forked run), kept
        so they survive the round trip into the new run."""
        self._wanted_columns: tuple[str | None, str | None] = (None, None)
        """Text and label columns a loaded config named, until the file's header is read."""
        self._missing: dict[str, str] = {}
        """Column fields whose loaded value the file lacks (shown as errors)."""
        self._length_note: str | None = None
        """The plan's notice about data.max_length (clamped to the model's positions)."""
        self._length_markup: str | None = None
        """What the max-length note box shows when it shows that notice."""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="new-run"):
            with VerticalScroll(id="run-form"):
                with Horizontal(classes="form-row"):
                    yield Input(placeholder="config.yaml to load or save", id="config-path",
                                compact=True)
                    yield Button("Load", id="load", compact=True)
                    yield Button("Save", id="save", compact=True)
                for fid, (_, label, placeholder) in FIELDS.items():
                    if fid == "freeze-n":
                        yield from self._select_field("task")
                        yield from self._select_field("freeze")
                    if fid == "encoding":
                        yield from self._select_field("text-col")
                        yield from self._select_field("label-col")
                    yield Label(label, classes="field-label")
                    field = Input(DEFAULTS.get(fid, ""), placeholder=placeholder, id=f"f-{fid}",
                                  compact=True)
                    if fid == "train-file":
                        with Horizontal(classes="form-row"):
                            yield field
                            yield Button("Browse", id="browse", compact=True)
                    else:
                        yield field
                    yield Static("", id=f"e-{fid}", classes="field-error -hidden")
                yield Static("", id="e-general", classes="field-error -hidden")
                yield Button("Launch (ctrl+r)", id="launch", variant="success", disabled=True)
            with Vertical(id="data-preview"):
                yield Static("Give a training file to preview it.", id="preview-summary")
                yield DataTable(id="preview-table", zebra_stripes=True)
                yield Static("", id="label-counts")
                yield Static("", id="length-stats")
                yield Button("Use", id="use-length", compact=True, classes="-hidden")
                yield LayerPlan(id="layer-plan")
        yield Footer()

    def _select_field(self, fid: str) -> ComposeResult:
        _, label = SELECTS[fid]
        options = {"task": TASK_CHOICES, "freeze": FREEZE_POLICIES}.get(fid, ())
        yield Label(label, classes="field-label")
        yield Select([(o, o) for o in options], id=f"f-{fid}", allow_blank=fid in
                     ("text-col", "label-col"), value=options[0] if options else Select.NULL,
                     prompt="pick after the data loads", compact=True)
        yield Static("", id=f"e-{fid}", classes="field-error -hidden")

    def on_mount(self) -> None:
        self.sub_title = "new run"
        self.query_one("#f-name", Input).focus()

        def job():  # on the engine thread, like every import of the hub libraries
            from engine.hub.client import local_model_ids

            return (self.post_message, ModelIdsListed(local_model_ids()))

        self.app.engine.submit(job)

    def on_model_ids_listed(self, msg: ModelIdsListed) -> None:
        # Completed runs too: `run:<id>` starts from what that run learned.
        runs = [f"run:{r.id}" for r in self.store.list_runs(status="completed", limit=50)]
        # A suggestion is drawn as it is: a cached id with a control character in it
        # (a hand-made cache folder) is left out rather than drawn raw.
        self.query_one("#f-model", Input).suggester = SuggestFromList(
            [i for i in msg.ids if not has_control(i)] + runs, case_sensitive=False)

    # -- prefilling -----------------------------------------------------

    def prefill(self, *, model: str | None = None, config: RunConfig | None = None,
                parent_id: int | None = None) -> None:
        self.parent_id = parent_id
        """The run this one is forked from, recorded as its parent."""
        self.sub_title = f"fork of run {parent_id}" if parent_id else "new run"
        if config is not None:
            d = config
            self._base = {k: v for k, v in d.to_dict().items() if k != "base_dir"}
            values = {
                "name": d.name, "model": d.model.id, "train-file": d.data.train,
                "encoding": d.data.encoding, "val-split": str(d.data.validation_split),
                "max-length": str(d.data.max_length), "epochs": _num(d.train.epochs),
                "batch": str(d.train.batch_size), "lr": f"{d.train.learning_rate:g}",
                "freeze-n": str(d.freeze.n), "seed": str(d.train.seed),
            }
            for fid, value in values.items():
                # An Input draws its value as it is: controls (a forked run's name) as escapes.
                self.query_one(f"#f-{fid}", Input).value = printable(value)
            task = self.query_one("#f-task", Select)
            with self.prevent(Select.Changed):  # every task again, until the model is read
                task.set_options([(t, t) for t in TASK_CHOICES])
            self._task_options, self._heads_for = [], None
            task.value = d.head.task
            self.query_one("#f-freeze", Select).value = d.freeze.policy
            self._wanted_columns = (d.data.text_column, d.data.label_column)
            for fid in ("text-col", "label-col"):
                select = self.query_one(f"#f-{fid}", Select)
                if select.value not in (Select.NULL, None) and select.value not in (
                        d.data.text_column, d.data.label_column):
                    select.clear()
        if model is not None:
            self.query_one("#f-model", Input).value = printable(model)
        self._schedule()

    # -- validation -----------------------------------------------------

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event) -> None:
        if getattr(event, "input", None) is not None and event.input.id == "config-path":
            return
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(0.15, self.validate)

    def form_values(self) -> dict:
        """The form as a config mapping, values parsed as YAML scalars (like --set)."""
        import yaml

        from engine.core.config import apply_overrides

        sets = []
        for fid, (key, _, _) in FIELDS.items():
            raw = self.query_one(f"#f-{fid}", Input).value.strip()
            if raw:
                sets.append(f"{key}={raw}")
        for fid, (key, _) in SELECTS.items():
            value = self.query_one(f"#f-{fid}", Select).value
            if isinstance(value, str):
                sets.append(f"{key}={yaml.safe_dump(value).strip()}")
        # Start from a loaded config, so settings the form does not show are kept.
        data = apply_overrides(self._base, sets)
        data.setdefault("name", "")
        data["base_dir"] = str(Path.cwd())
        return data

    def validate(self) -> None:
        for fid in (*FIELDS, *SELECTS, "general"):
            self._error(fid, None)
        self.config = None
        self._refresh_heads()
        self._refresh_preview()
        try:
            self.config = RunConfig.from_dict(self.form_values())
        except HubtuneError as exc:
            self._error(self._field_for(str(exc)), str(exc))
        self._update_launch()
        self._refresh_plan()
        self._show_length_note()

    # -- the heads that fit the model ------------------------------------

    def _refresh_heads(self) -> None:
        """Offer only the tasks whose head fits the model, once its config is readable."""
        model = self.query_one("#f-model", Input).value.strip()
        if model and model != self._heads_for:
            self._heads_for = model
            self._find_heads(model)

    def _find_heads(self, model: str) -> None:
        def job():
            if model != self._heads_for:
                return  # superseded while queued
            from engine.core.config import ModelSpec
            from engine.modeling.heads import heads_for

            try:
                heads = heads_for(ModelSpec(id=model))
            except Exception:  # an unreadable model: the plan panel says why
                heads = None
            return self._show_heads, model, heads

        self._in_engine(job)

    def _show_heads(self, model: str, heads: tuple[str, ...] | None) -> None:
        if not self.is_mounted:
            return  # the screen closed while the engine worked
        if model != self.query_one("#f-model", Input).value.strip():
            return  # the model changed again while this looked
        offered = [t for t in TASK_CHOICES if heads is None or t in heads] or list(TASK_CHOICES)
        select = self.query_one("#f-task", Select)
        current = select.value
        if [value for _, value in self._task_options] == offered:
            return
        self._task_options = [(t, t) for t in offered]
        with self.prevent(Select.Changed):
            select.set_options(self._task_options)
            select.value = current if current in offered else offered[0]
        if current not in offered and isinstance(current, str):
            self.notify(f"{current} does not fit {model}; the task is now {offered[0]} "
                        f"(fits: {', '.join(offered)}).", severity="warning")
        self._schedule()

    # -- the layer plan -------------------------------------------------

    def _refresh_plan(self) -> None:
        """Re-plan when what the plan depends on changed (model, task, freezing, data, rates)."""
        cfg = self.config
        if cfg is None:
            return
        t = cfg.train
        key = repr((cfg.model, cfg.head, cfg.freeze, cfg.data, t.batch_size, t.precision,
                    t.learning_rate, t.head_learning_rate, t.layer_lr_decay,
                    t.group_learning_rates))
        if key == self._planned:
            return
        self._planned = key
        self._length_note = None  # until the new plan says
        self.query_one("#plan-summary", Static).update("[dim]Planning…[/dim]")
        self._plan(cfg, key)

    def _plan(self, cfg: RunConfig, key: str) -> None:
        def job():
            if key != self._planned:
                return  # superseded while queued
            from engine.modeling.loading import local_files_only
            from engine.training.plan import make_plan

            try:
                with local_files_only():
                    return self._planned_for, cfg, make_plan(cfg)
            except HubtuneError as exc:
                return self._planned_for, cfg, str(exc)
            except Exception as exc:  # a model the planner cannot build: say so, keep the form
                return self._planned_for, cfg, f"{type(exc).__name__}: {exc}"

        self._in_engine(job)

    def _planned_for(self, cfg: RunConfig, plan) -> None:
        if not self.is_mounted:
            return  # the screen closed while the engine worked
        panel = self.query_one(LayerPlan)
        if isinstance(plan, str):
            panel.show_error(plan)
        else:
            panel.show(plan, cfg)
        self._length_note = None if isinstance(plan, str) else plan.length_notice
        self._show_length_note()

    def _show_length_note(self) -> None:
        """Under Max tokens: the plan's notice that it is clamped to the model's positions
        (engine.modeling.lengths.effective_max_length, the check the run makes)."""
        box = self.query_one("#e-max-length", Static)
        note = self._length_note
        markup = f"[$warning]{literal(note)}[/]" if note else None
        ours = box.content == self._length_markup  # not an error message
        if box.has_class("-hidden") or ours:  # an error in the field comes first
            box.update(markup or "")
            box.set_class(not markup, "-hidden")
        self._length_markup = markup

    def _in_engine(self, job) -> None:
        """Run `job` on the app's engine thread (tui/engine_thread.py) and call what it
        returns on the UI thread."""
        self.app.engine.submit(job)

    @on(LayerPlan.Toggled)
    def _freeze_toggled(self, event: LayerPlan.Toggled) -> None:
        """A group flipped in the tree: the plan becomes a `modules` policy."""
        base = dict(self._base)
        if event.patterns:
            base["freeze"] = {**base.get("freeze", {}), "policy": "modules",
                              "patterns": event.patterns}
            self.query_one("#f-freeze", Select).value = "modules"
        else:
            base["freeze"] = {"policy": "full"}
            self.query_one("#f-freeze", Select).value = "full"
        self._base = base
        self._schedule()

    @on(LayerPlan.RateSet)
    def _rate_set(self, event: LayerPlan.RateSet) -> None:
        """A group's own learning rate, kept in the config the form does not show."""
        base = dict(self._base)
        train = dict(base.get("train", {}))
        rates = dict(train.get("group_learning_rates") or {})
        if event.rate is None:
            rates.pop(event.group, None)
        else:
            rates[event.group] = event.rate
        train["group_learning_rates"] = rates
        base["train"] = train
        self._base = base
        self._schedule()

    def _refresh_preview(self) -> None:
        """Preview the data file when its path, encoding or label column changed."""
        from engine.core.config import resolve_package_file

        raw = self.query_one("#f-train-file", Input).value.strip()
        if not raw:
            return
        encoding = self.query_one("#f-encoding", Input).value.strip() or "utf-8"
        label = self.query_one("#f-label-col", Select).value
        label = label if isinstance(label, str) else None
        try:
            path = resolve_package_file(raw) if raw.startswith("pkg:") else Path(raw).expanduser()
        except HubtuneError as exc:
            self._error("train-file", str(exc))
            self.data_ok = False
            return
        key = f"{path}|{encoding}|{label}"
        if key != self._previewed:
            # A new label column only changes the counts; a new file or encoding
            # must be read before Launch is allowed again.
            if self._previewed is None or not self._previewed.startswith(f"{path}|{encoding}|"):
                self.data_ok = False
            self._previewed = key
            self._preview(path, encoding, label)
        else:
            self._check_columns()
            if self._preview_error:
                self._error("train-file", self._preview_error)

    def _field_for(self, message: str) -> str:
        for fid, (key, *_) in {**FIELDS, **SELECTS}.items():
            if message.startswith(key + " ") or message.startswith(f"Unknown key {key}"):
                return fid
        if message.startswith("freeze."):
            return "freeze"
        return "general"

    def _error(self, fid: str, message: str | None) -> None:
        box = self.query_one(f"#e-{fid}", Static)
        # Messages quote names, paths and column names: plain text, never markup.
        box.update(plain(message or "", multiline=True, limit=2000))
        box.set_class(not message, "-hidden")

    def _update_launch(self) -> None:
        self.query_one("#launch", Button).disabled = not (self.config and self.data_ok)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def _preview(self, path: Path, encoding: str, label: str | None) -> None:
        from engine.data.reader import preview_file

        try:
            preview = preview_file(path, encoding=encoding, label_column=label)
        except HubtuneError as exc:
            self.post_message(DataPreviewed(str(path), None, str(exc)))
            return
        self.post_message(DataPreviewed(str(path), preview))

    def on_data_previewed(self, msg: DataPreviewed) -> None:
        table = self.query_one("#preview-table", DataTable)
        table.clear(columns=True)
        self.preview = msg.preview
        self._preview_error = msg.error
        if msg.error:
            self.data_ok = False
            self._error("train-file", msg.error)
            self.query_one("#preview-summary", Static).update("No preview.")
            self.query_one("#label-counts", Static).update("")
            self._update_launch()
            return
        p = msg.preview
        # Headers and cells are the file's own text: Text, never markup (a str cell is
        # parsed as markup), one line each, controls shown as escapes.
        for col in p.columns:
            table.add_column(cell(cut(col, 40)), key=col)
        for row in p.rows:
            table.add_row(*[cell(cut(value, 40)) for value in row[: len(p.columns)]]
                          + [""] * (len(p.columns) - len(row)))
        options = [(cell(cut(c, 40)), c) for c in p.columns]
        wanted = dict(zip(("text-col", "label-col"),
                          self._wanted_columns, strict=True))
        self._wanted_columns = (None, None)
        self._missing = {}
        for fid, guess in (("text-col", p.text_column), ("label-col", p.label_column)):
            select = self.query_one(f"#f-{fid}", Select)
            current = select.value
            with self.prevent(Select.Changed):
                select.set_options(options)  # this clears the selection
                if wanted[fid] is not None and wanted[fid] not in p.columns:
                    self._missing[fid] = wanted[fid]  # a loaded config named a wrong column
                    continue
                # Keep what the user picked; else what a loaded config named; else a guess.
                for choice in (current, wanted[fid], guess):
                    if isinstance(choice, str) and choice in p.columns:
                        select.value = choice
                        break
        self.query_one("#preview-summary", Static).update(
            f"[b]{literal(Path(p.path).name, 80)}[/b]: {p.total_rows:,} rows, "
            f"{len(p.columns)} columns"
            # Label problems the run will report too (engine.data.reader.check_labels).
            + "".join(f"\n[$warning]{literal(w, 400)}[/]" for w in p.warnings))
        self.data_ok = True
        self._check_columns()
        self._update_launch()

    def _check_columns(self) -> None:
        p = self.preview
        if p is None:
            return
        label = self.query_one("#f-label-col", Select).value
        text = self.query_one("#f-text-col", Select).value
        ok = True
        missing = self._missing
        task = self.query_one("#f-task", Select).value
        needed = [("text-col", text)]
        if task not in UNLABELLED:
            needed.append(("label-col", label))
        for fid, value in needed:
            if not isinstance(value, str):
                name = Path(p.path).name
                if fid in missing:
                    self._error(fid, f"{name} has no column {missing[fid]!r}; pick one of "
                                     f"{', '.join(p.columns)}.")
                else:
                    self._error(fid, f"Pick a column of {name}.")
                ok = False
            else:
                missing.pop(fid, None)
        if isinstance(text, str) and task != "image-classification":
            self._refresh_lengths(p, text)
        if isinstance(label, str) and label == p.label_column:
            shown = "  ".join(f"{cut(str(k), 30)} {v:,}" for k, v in p.label_counts[:8])
            more = f"  (+{len(p.label_counts) - 8} more)" if len(p.label_counts) > 8 else ""
            self.query_one("#label-counts", Static).update(
                f"[b]labels[/b] ({literal(label, 40)}): {literal(shown, 400)}{more}")
        self.data_ok = ok
        self._update_launch()

    # -- token lengths ------------------------------------------------------

    def _refresh_lengths(self, preview, text_column: str) -> None:
        """Count tokens in a thread when the model, file or text column changed."""
        model = self.query_one("#f-model", Input).value.strip()
        if not model or Path(preview.path).is_dir():
            return
        encoding = self.query_one("#f-encoding", Input).value.strip() or "utf-8"
        key = (model, preview.path, encoding, text_column)
        if key != self._length_key:
            self._length_key = key
            self.lengths = None
            self.query_one("#length-stats", Static).update("[dim]Counting tokens…[/dim]")
            self.query_one("#use-length", Button).add_class("-hidden")
            self._count_tokens(key)
        else:
            self._show_lengths()

    def _count_tokens(self, key: tuple) -> None:
        def job():
            if key != self._length_key:
                return  # superseded while queued
            from engine.modeling.lengths import token_lengths
            from engine.modeling.loading import local_files_only

            model, path, encoding, column = key
            try:
                with local_files_only():
                    result = token_lengths(model, Path(path), [column], encoding=encoding)
            except HubtuneError as exc:
                result = str(exc)
            except Exception as exc:  # a tokenizer that will not load: say so, keep the form
                result = f"{type(exc).__name__}: {exc}"
            return self._counted, key, result

        self._in_engine(job)

    def _counted(self, key: tuple, result) -> None:
        if not self.is_mounted:
            return  # the screen closed while the engine worked
        if key != self._length_key:
            return  # the form moved on while this counted
        self.lengths = result
        self._show_lengths()

    def _show_lengths(self) -> None:
        stats = self.lengths
        box = self.query_one("#length-stats", Static)
        button = self.query_one("#use-length", Button)
        if stats is None:
            return
        if isinstance(stats, str):
            box.update(f"[dim]No token counts: {literal(stats)}[/dim]")
            button.add_class("-hidden")
            return
        try:
            current = int(self.query_one("#f-max-length", Input).value)
        except ValueError:
            current = None
        cut = f"; at {current}, {stats.cut_text(current)}" if current is not None else ""
        box.update(f"[b]tokens[/b] median {stats.p50} · p95 {stats.p95} · p99 {stats.p99} · "
                   f"longest {stats.longest}; suggested max {stats.suggested}{cut}")
        button.label = f"Use {stats.suggested}"
        button.set_class(current == stats.suggested, "-hidden")

    @on(Button.Pressed, "#use-length")
    def _use_suggested_length(self) -> None:
        stats = self.lengths
        if stats is not None and not isinstance(stats, str):
            self.query_one("#f-max-length", Input).value = str(stats.suggested)

    # -- actions ------------------------------------------------------------

    @on(Button.Pressed, "#browse")
    def action_browse(self) -> None:
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

    def action_leave_field(self) -> None:
        """Esc takes the focus off a field, so 1-4 switch screens again."""
        self.set_focus(None)

    @on(Button.Pressed, "#launch")
    def action_launch(self) -> None:
        self.validate()
        if not (self.config and self.data_ok):
            self.notify("Fix the fields marked in red first.", severity="warning")
            return
        from engine.core.config import MAX_NAME_CHARS
        from engine.worker import start_run
        from store import StoreError

        cfg = self.config
        try:
            if not cfg.name:
                import dataclasses

                # The file's name, made a name the store takes (one line, not too long).
                stem = printable(Path(cfg.data.train).stem)
                cfg = dataclasses.replace(cfg, name=cut(stem, MAX_NAME_CHARS))
            run_id = start_run(self.store, cfg, parent_id=self.parent_id)
            self.parent_id = None
        except (HubtuneError, StoreError) as exc:
            self.notify(str(exc), severity="error")
            return
        self.notify(f"Run {run_id} started; it trains in its own process.")
        self.app.show_run(run_id)

    @on(Button.Pressed, "#load")
    def action_load(self) -> None:
        raw = self.query_one("#config-path", Input).value.strip()
        if not raw:
            self.notify("Type the path of a YAML config first.", severity="warning")
            self.query_one("#config-path", Input).focus()
            return
        try:
            cfg = load_config(raw)
        except HubtuneError as exc:
            self.notify(str(exc), severity="error")
            return
        if not Path(cfg.data.train).is_absolute() and not cfg.data.train.startswith("pkg:"):
            import dataclasses

            data = dataclasses.replace(cfg.data, train=str(cfg.resolve(cfg.data.train)))
            cfg = dataclasses.replace(cfg, data=data)
        self.prefill(config=cfg)
        self.notify(f"Loaded {raw}.")

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        import yaml

        raw = self.query_one("#config-path", Input).value.strip()
        if not raw or self.config is None:
            self.notify("Give a path, and fix the form first.", severity="warning")
            return
        data = self.config.to_dict()
        data.pop("base_dir", None)
        text = yaml.safe_dump(data, sort_keys=False)
        if Path(raw).expanduser().exists():
            from tui.screens.confirm import ConfirmScreen

            def answered(yes: bool | None) -> None:
                if yes:
                    self._write_config(raw, text, force=True)

            self.app.push_screen(ConfirmScreen(f"{raw} exists. Replace it?"), answered)
            return
        self._write_config(raw, text, force=False)

    def _write_config(self, raw: str, text: str, *, force: bool) -> None:
        """Save the form's YAML to `raw`: never over a file unasked, never inside
        hubtune's data folder; a problem is one notification."""
        from engine.core.errors import HubtuneError
        from engine.core.outputs import write_text
        from store import data_dir

        try:
            path = write_text(raw, text, force=force, protected=data_dir())
        except HubtuneError as exc:
            self.notify(str(exc), severity="error", markup=False)
            return
        self.notify(f"Saved {path}.", markup=False)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
