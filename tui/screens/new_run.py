"""The new-run screen: a form for a run config, validated as you type.

Every field is checked by the same config dataclasses the CLI uses (the
rules live in tui/new_run_form.py, without Textual), and the data file is
previewed (columns, first rows, label counts) in a thread worker. An error
appears under the field it concerns, and Launch stays disabled until there
is none. Launch records the run and starts its worker in its own process
session, then shows it on the runs screen.

The screen composes the fields (tui/widgets/run_form.py) and the preview
pane with the layer plan (tui/widgets/data_preview.py) and wires them up.
The heads that fit the model and the layer plan (like the pane's token
counts) need transformers: they run on the app's engine thread
(tui/engine_thread.py) and come back as `HeadsFound` and `PlanReady`, each
with the inputs it was made for; one the form has moved past is dropped.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.timer import Timer
from textual.widgets import Button, Header, Input, Select, Static

from engine.core.config import RunConfig
from engine.core.errors import HubtuneError
from tui.formatting import cut
from tui.messages import (
    DataPreviewed,
    HeadsFound,
    ModelIdsListed,
    PlanReady,
)
from tui.new_run_data import DataFile
from tui.new_run_form import TASK_CHOICES, NewRunForm, plan_key
from tui.safe_text import has_control, printable
from tui.screens.sweep_dialog import open_sweep
from tui.widgets.advanced_settings import AdvancedSettings
from tui.widgets.audit_pane import AuditPane
from tui.widgets.config_file import ConfigFileRow
from tui.widgets.data_preview import DataPreviewPane
from tui.widgets.footer import KeysFooter
from tui.widgets.layer_plan import LayerPlan
from tui.widgets.run_form import RunForm
from tui.widgets.run_on import RunOn


class NewRunScreen(Screen):
    """Configure a fine-tune and launch it."""

    # Below 100 columns the form and the preview stack (app.tcss): the preview keeps its text.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]

    BINDINGS = [
        Binding("ctrl+l", "load", "Load YAML"),
        Binding("ctrl+s", "save", "Save YAML"),
        Binding("ctrl+r", "launch", "Launch"),
        Binding("ctrl+t", "queue", "Queue", show=False),  # on its button; the footer is full
        Binding("f5", "sweep", "Sweep", show=False),  # tui/screens/sweep_dialog.py
        Binding("ctrl+o", "browse", "Pick file"),
        Binding("f2", "reveal('preview')", "Preview"),  # DataPreviewPane.reveal
        Binding("f3", "reveal('plan')", "Plan"),
        Binding("f4", "reveal('audit')", "Audit"),  # AuditPane.reveal_and_start
        Binding("escape", "leave_field", "Leave field", show=False),
    ]

    def __init__(self, store) -> None:
        super().__init__()
        self.store = store
        self.config: RunConfig | None = None
        """The config as the form stands, when it is valid."""
        self.data = DataFile(self)
        """The data file as last read (tui/new_run_data.py): its preview, whether Launch
        may go."""
        self.parent_id: int | None = None
        """The run this form was forked from (recorded as the new run's parent)."""
        self._timer: Timer | None = None
        self._base: dict = {}
        """The config the form was filled from (NewRunForm.base)."""
        self._length_note: str | None = None
        """The plan's notice about data.max_length (clamped to the model's positions)."""
        # What the engine thread was last asked for: an answer for anything else is stale.
        self._heads_for: str | None = None
        self._planned: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="new-run"):
            yield RunForm(id="run-form")
            yield DataPreviewPane(id="data-preview")
        yield KeysFooter()

    @property
    def form(self) -> RunForm:
        return self.query_one(RunForm)

    @property
    def pane(self) -> DataPreviewPane:
        return self.query_one(DataPreviewPane)

    def on_mount(self) -> None:
        self.sub_title = "new run"
        self.query_one("#f-name", Input).focus()
        self.app.engine.submit(_list_model_ids, to=self)

    def on_model_ids_listed(self, msg: ModelIdsListed) -> None:
        # Completed runs too: `run:<id>` starts from what that run learned.
        runs = [f"run:{r.id}" for r in self.store.list_runs(status="completed", limit=50)]
        # A suggestion is drawn as it is: a cached id with a control character in it
        # (a hand-made cache folder) is left out rather than drawn raw.
        self.query_one("#f-model", Input).suggester = SuggestFromList(
            [i for i in msg.ids if not has_control(i)] + runs, case_sensitive=False)

    def prefill(self, *, model: str | None = None, config: RunConfig | None = None,
                parent_id: int | None = None) -> None:
        self.parent_id = parent_id
        self.sub_title = f"fork of run {parent_id}" if parent_id else "new run"
        if config is not None:
            form = NewRunForm.from_config(config)
            self._base = form.base
            self._heads_for = None  # every task again, until the model is read
            self.form.fill(form)
            self.data.wanted_columns = {"text-col": form.text_col, "label-col": form.label_col}
        if model is not None:
            self.query_one("#f-model", Input).value = printable(model)
        self._schedule()

    # -- validation -----------------------------------------------------

    @on(Input.Changed)
    @on(Select.Changed)
    @on(AdvancedSettings.Changed)
    def _changed(self, event: Input.Changed | Select.Changed | AdvancedSettings.Changed) -> None:
        if isinstance(event, Input.Changed) and event.input.id == "config-path":
            return
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(0.15, self.validate)

    def validate(self) -> None:
        self.form.clear_errors()
        self.config = None
        self._refresh_heads()
        self.data.refresh()
        model = self.form.read(self._base)
        self.config, errors = model.check()
        self.form.show_messages(errors, model.hints())
        self.form.show_settings_state(model)
        self.query_one(ConfigFileRow).config = self.config
        self._update_launch()
        self._refresh_plan()
        self.form.show_length_note(self._length_note)

    def _update_launch(self) -> None:
        self.form.allow_launch(bool(self.config and self.data.ok))

    # -- engine work: heads, plan ---------------------------------------

    def _refresh_heads(self) -> None:
        """Offer only the tasks whose head fits the model, once its config is readable."""
        model = self.form.value("model")
        if model and model != self._heads_for:
            self._heads_for = model
            self.app.engine.submit(
                lambda: _find_heads(model) if model == self._heads_for else None, to=self)

    def on_heads_found(self, msg: HeadsFound) -> None:
        if msg.model != self.form.value("model"):
            return  # the model changed again while this looked
        offered = [t for t in TASK_CHOICES if msg.heads is None or t in msg.heads]
        offered = offered or list(TASK_CHOICES)
        current = self.form.value("task")
        if not self.form.offer_tasks(offered):
            return
        if current is not None and current not in offered:
            self.notify(f"{current} does not fit {msg.model}; the task is now {offered[0]} "
                        f"(fits: {', '.join(offered)}).", severity="warning")
        self._schedule()

    def _refresh_plan(self) -> None:
        """Re-plan when what the plan depends on changed (model, task, freezing, data, rates)."""
        cfg = self.config
        if cfg is None:
            return
        key = plan_key(cfg)
        if key == self._planned:
            return
        self._planned = key
        self._length_note = None  # until the new plan says
        self.query_one("#plan-summary", Static).update("[dim]Planning…[/dim]")
        self.app.engine.submit(
            lambda: _make_plan(cfg, key) if key == self._planned else None, to=self)

    def on_plan_ready(self, msg: PlanReady) -> None:
        if msg.key != self._planned:
            return  # the form moved on while this planned
        panel = self.query_one(LayerPlan)
        if msg.error is not None:
            panel.show_error(msg.error)
        else:
            panel.show(msg.plan, msg.config)
        self._length_note = None if msg.error is not None else msg.plan.length_notice
        self.form.show_length_note(self._length_note)

    @on(LayerPlan.Toggled)
    def _freeze_toggled(self, event: LayerPlan.Toggled) -> None:
        """A group flipped in the tree: the plan becomes a `modules` policy."""
        form = self.form.read(self._base).with_frozen(event.patterns)
        self._base = self.form.take(form, "freeze.patterns")
        self._schedule()

    @on(LayerPlan.RateSet)
    def _rate_set(self, event: LayerPlan.RateSet) -> None:
        """A group's own learning rate: the Advanced section's group_learning_rates."""
        form = self.form.read(self._base).with_group_rate(event.group, event.rate)
        self._base = self.form.take(form, "train.group_learning_rates")
        self._schedule()

    # -- the data file ----------------------------------------------------

    def on_data_previewed(self, msg: DataPreviewed) -> None:
        self.data.previewed(msg)
        self._update_launch()

    @on(DataPreviewPane.LengthChosen)
    def _use_suggested_length(self, event: DataPreviewPane.LengthChosen) -> None:
        self.query_one("#f-max-length", Input).value = str(event.length)

    # -- actions ------------------------------------------------------------

    def action_browse(self) -> None:
        self.form.browse()

    def action_leave_field(self) -> None:
        """Esc takes the focus off a field, so 1-4 switch screens again."""
        self.set_focus(None)

    @on(Button.Pressed, "#launch")
    def action_launch(self) -> None:
        self._start(queue=False)

    @on(Button.Pressed, "#queue")
    def action_queue(self) -> None:
        self._start(queue=True)

    def _start(self, *, queue: bool) -> None:
        """Start the run's worker now, or with `queue` queue it; then show the run."""
        self.validate()
        if not (self.config and self.data.ok):
            self.notify("Fix the fields marked in red first.", severity="warning")
            return
        if self.app.acting_on_runs():  # a second Enter while the first start runs
            self.notify("A run is being started; it shows on the runs screen in a moment.")
            return
        from engine.launch.start import start_run

        cfg, parent_id, started = _named(self.config), self.parent_id, []

        def act(store) -> str:  # on a thread: starting a worker must not freeze the form
            started.append(start_run(store, cfg, parent_id=parent_id, queue=queue))
            return (_queued_note(store, started[0]) if queue
                    else f"Run {started[0]} started; it trains in its own process.")

        def done() -> None:
            if self.parent_id == parent_id:
                self.parent_id = None
            self.app.show_run(started[0])

        self.query_one(RunOn).launch(cfg, queue, act, done)  # here, or on the remote chosen

    def action_sweep(self) -> None:  # F5, the Sweep… button
        open_sweep(self)

    def on_screen_resume(self) -> None:
        self.query_one(RunOn).read_again()  # a remote added meanwhile is offered

    def action_reveal(self, part: str) -> None:  # F2-F4, from any field too
        if part == "audit":
            return self.query_one(AuditPane).reveal_and_start()
        self.pane.reveal(plan=part == "plan")

    def action_load(self) -> None:
        self.query_one(ConfigFileRow).load()

    def action_save(self) -> None:
        self.query_one(ConfigFileRow).save()

    @on(ConfigFileRow.Loaded)
    def _config_loaded(self, event: ConfigFileRow.Loaded) -> None:
        self.prefill(config=event.config)
        self.notify(f"Loaded {event.path}.")


def _named(cfg: RunConfig) -> RunConfig:
    """`cfg`, named after its data file if it has no name: one line, short, as the store
    takes names."""
    import dataclasses

    from engine.core.config import MAX_NAME_CHARS

    if cfg.name:
        return cfg
    stem = printable(Path(cfg.data.train).stem)
    return dataclasses.replace(cfg, name=cut(stem, MAX_NAME_CHARS))


def _queued_note(store, run_id: int) -> str:
    """Where a run just queued stands: its place, or started at once."""
    order = store.waiting_ids()
    if run_id not in order:
        return f"Run {run_id} was queued and started at once: a slot was free."
    note = f"Run {run_id} is queued at #{order.index(run_id) + 1} of {len(order)}"
    if store.queue_paused():
        return note + "; the queue is paused (P on the runs screen resumes it)."
    return note + "; it starts when a slot is free."


# -- jobs for the engine thread: plain inputs in, one message out -------------

def _list_model_ids() -> ModelIdsListed:
    from engine.hub.client import local_model_ids

    return ModelIdsListed(local_model_ids())


def _find_heads(model: str) -> HeadsFound:
    from engine.core.config import ModelSpec
    from engine.tasks.fit import heads_for

    try:
        return HeadsFound(model, heads_for(ModelSpec(id=model)))
    except Exception:  # an unreadable model: the plan panel says why
        return HeadsFound(model, None)


def _make_plan(cfg: RunConfig, key: str) -> PlanReady:
    from engine.modeling.loading import local_files_only
    from engine.training.plan import make_plan

    try:
        with local_files_only():
            return PlanReady(key, cfg, make_plan(cfg))
    except HubtuneError as exc:
        return PlanReady(key, cfg, None, str(exc))
    except Exception as exc:  # a model the planner cannot build: say so, keep the form
        return PlanReady(key, cfg, None, f"{type(exc).__name__}: {exc}")
