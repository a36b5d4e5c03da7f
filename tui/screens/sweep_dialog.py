"""The new-run form's sweep dialog (F5, the form's **Sweep…** button): a grid, random or
TPE sweep over the form's config, queued as `hubtune sweep` queues one.

The dialog checks its fields with the CLI's parsers (tui/sweep_form.py) and shows the
sentence inline, as plain text; it dismisses with a checked plan only. `open_sweep`
(the new-run screen's F5) opens it for the form and queues the plan off the UI thread
(App.act_on_run), then lists the sweep on the runs screen. It never queues on a remote: a sweep is this machine's.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static, TextArea

from engine.core.config import RunConfig
from engine.core.errors import ConfigError
from tui.formatting import literal
from tui.safe_text import printable
from tui.sweep_form import KINDS, PRUNE_CHOICES, SweepPlan, plan_sweep, queue_plan, whole_number
from tui.widgets.footer import KeysFooter

SPACE_HINT = "train.learning_rate=1e-5:1e-3:log\ntrain.batch_size=8,16"


class SweepScreen(ModalScreen[SweepPlan | None]):
    """Dismisses with a checked SweepPlan, or None for Cancel / Escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, config: RunConfig) -> None:
        super().__init__()
        self.config = config
        """The form's valid config, every point's base."""

    def compose(self) -> ComposeResult:
        with Vertical(id="sweep-box"):
            yield Label("Sweep over this form's config: one queued run per point, "
                        "sharing a sweep id", id="sweep-title")
            yield Label("[dim]Kind · trials (random, TPE) · parallel (TPE; empty: the queue's "
                        "slots) · pruner (TPE)[/dim]")
            with Horizontal(classes="sweep-row"):
                yield Select(KINDS, value="random", allow_blank=False, id="sweep-kind",
                             compact=True)
                yield Input(placeholder="trials (random, TPE)", id="sweep-trials",
                            compact=True)
                yield Input(placeholder="parallel (TPE)", id="sweep-parallel", compact=True)
                yield Select([(p, p) for p in PRUNE_CHOICES], value="median",
                             allow_blank=False, id="sweep-prune", compact=True)
            yield Label("Search space, one line each: KEY=LO:HI[:log] (a range) or "
                        "KEY=A,B,... (values)")
            yield TextArea("", id="sweep-space", compact=True)
            yield Static(f"[dim]e.g. {literal(SPACE_HINT.replace(chr(10), ' · '))}[/dim]")
            yield Static("", id="sweep-error", classes="field-error -hidden")
            with Horizontal(id="sweep-buttons"):
                yield Button("Queue sweep", id="sweep-ok", variant="primary")
                yield Button("Cancel", id="sweep-cancel")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#sweep-space", TextArea).focus()

    @on(Button.Pressed, "#sweep-ok")
    def _ok(self) -> None:
        try:
            plan = self.read()
        except ConfigError as exc:
            box = self.query_one("#sweep-error", Static)
            box.update(f"[$error]{literal(str(exc), limit=400)}[/]")
            box.remove_class("-hidden")
            return
        self.dismiss(plan)

    @on(Button.Pressed, "#sweep-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def read(self) -> SweepPlan:
        """The fields as a checked plan; ConfigError with the CLI's sentence otherwise."""
        kind = self.query_one("#sweep-kind", Select).value
        return plan_sweep(
            self.config, kind=str(kind), space=self.query_one("#sweep-space", TextArea).text,
            trials=whole_number(self.query_one("#sweep-trials", Input).value, "Trials"),
            parallel=whole_number(self.query_one("#sweep-parallel", Input).value, "Parallel"),
            prune=str(self.query_one("#sweep-prune", Select).value))


def open_sweep(screen) -> None:
    """The sweep dialog over the new-run `screen`'s config (F5, the Sweep… button), once
    the form is valid; a checked plan is queued on a thread."""
    from tui.widgets.run_on import RunOn

    screen.validate()
    if not (screen.config and screen.data.ok):
        screen.notify("Fix the fields marked in red first.", severity="warning")
        return
    if screen.query_one(RunOn).remote is not None:
        screen.notify("A sweep queues on this machine; choose it under Run on first.",
                      severity="warning")
        return
    if screen.app.acting_on_runs():
        screen.notify("A run is being started; open the sweep again in a moment.")
        return
    screen.app.push_screen(SweepScreen(screen.config),
                           lambda plan: _queue_sweep(screen.app, plan))


def _queue_sweep(app, plan: SweepPlan | None) -> None:
    if plan is None:
        return
    queued: list = []

    def act(store) -> str:  # on a thread: it writes the store and may start workers
        queued.extend(queue_plan(store, plan))
        sweep_id, ids = queued
        note = f"Sweep {sweep_id}: queued {len(ids)} runs"
        if store.queue_paused():
            return note + "; the queue is paused (P on the runs screen resumes it)."
        return note + "; they start as slots free up."

    app.act_on_run(act, lambda: show_sweep(app, printable(queued[0]), queued[1]))


def show_sweep(app, sweep_id: str, ids: list[int]) -> None:
    """The runs screen, listing the sweep only (as its `g` does), its first run selected."""

    async def go() -> None:
        await app.switch_mode("runs")
        box = app.screen.query_one("#run-search", Input)
        box.value = f"sweep:{sweep_id}"
        box.remove_class("-hidden")
        if ids:
            app.screen.select_run(ids[0])

    app.run_worker(go(), group="navigate")
