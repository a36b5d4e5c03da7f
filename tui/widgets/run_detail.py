"""The panel under the runs table: one run's status, curves and event log, and two more
views of it: details (d: where it comes from and what changed, tags, notes, output
folder, per-class scores, config) and errors (e: the validation examples its kept model
gets most wrong, read on the engine thread). The text of those is tui/run_info.py.

The event log and the stats line are laid out again when the panel's width changes:
an event keeps whole lines, and `loss 0.41` is never split across two."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.events import Resize
from textual.widgets import RichLog, Static

from tui.formatting import (
    current_step,
    duration,
    learning_rate,
    literal,
    metric,
    run_eta,
    status_markup,
)
from tui.messages import ErrorsReviewed, RunDetailRefreshed
from tui.run_info import ERRORS_SHOWN, details_lines, errors_lines, pack, review_errors
from tui.safe_text import printable
from tui.watch_badges import badge
from tui.widgets.chart import LineChart, Series
from tui.widgets.error_marks import ErrorMarks

VIEWS = {"overview": "d details · e errors", "details": "details · d back · e errors",
         "errors": "errors · e back · d details"}
"""The panel's views, and the title that names the keys between them."""


class EventLog(RichLog):
    """A RichLog that wraps its lines again when its width changes (a RichLog keeps the
    wrapping of the width it was written at).

    While hidden (the details or errors view is shown) it has no width, and a RichLog
    would wrap what it is given then at its `min_width`: those events (a resume's, say)
    are kept and written when it is shown again."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entries: list[Text] = []
        self._wrapped_at = 0
        """The text width the lines shown were wrapped at (0: some are not written yet)."""

    def add(self, text: Text) -> None:
        self.entries = [*self.entries[-(self.max_lines or 500) + 1:], text]
        if self.scrollable_content_region.width and self._wrapped_at:
            self.write(text)
        else:
            self._wrapped_at = 0  # written once it has a width (`_rewrap`)
            self.call_after_refresh(self._rewrap)

    def reset(self) -> None:
        self.entries = []
        self.clear()

    def on_resize(self) -> None:
        self.call_after_refresh(self._rewrap)

    def on_show(self) -> None:
        self.call_after_refresh(self._rewrap)

    def _rewrap(self) -> None:
        """Write every entry again at the log's width, if that is not what they have."""
        width = self.scrollable_content_region.width
        if not width or width == self._wrapped_at:
            return
        self._wrapped_at = width
        self.clear()
        for text in self.entries:
            self.write(text)


class RunDetail(Horizontal):
    """Shows whichever run the table's cursor is on; fed by RunDetailRefreshed."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._last_event_id = 0
        self._run_id: int | None = None
        self._remote: str | None = None
        """The remote the run shown is on (tui/remote_runs.py); None: this machine."""
        self._summary = ""
        self._last: RunDetailRefreshed | None = None
        self.view = "overview"
        """overview (curves and events), details or errors."""
        self._errors_for: int | None = None
        """The run whose errors were last asked for."""
        self._local: RunDetailRefreshed | None = None
        """The last of this machine's runs shown, to show again when the cursor comes
        back from a remote's run (tui/remote_runs.py) before the poll thread noticed."""

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-left"):
            yield Static("Select a run to see it here.", id="detail-summary")
            yield LineChart("training loss", id="loss-curve", classes="-hidden")
            yield LineChart("validation", id="val-curve", classes="-hidden")
        yield EventLog(id="event-log", wrap=True, markup=False, max_lines=500, min_width=20)
        with VerticalScroll(id="detail-info", classes="-hidden"):
            yield Static("", id="info-text")
        with VerticalScroll(id="detail-errors", classes="-hidden"):
            yield Static("", id="errors-text")
            yield ErrorMarks(id="error-marks", classes="-hidden")  # "mislabelled" (#34)

    def on_mount(self) -> None:
        self.query_one("#event-log").border_title = "events"
        self.border_title = VIEWS["overview"]

    def toggle_view(self, view: str) -> None:
        """Show `view` (details or errors), or the curves again if it is showing."""
        self.view = "overview" if self.view == view else view
        self.border_title = VIEWS[self.view]
        overview = self.view == "overview"
        for wid in ("#detail-left", "#event-log"):
            self.query_one(wid).set_class(not overview, "-hidden")
        self.query_one("#detail-info").set_class(self.view != "details", "-hidden")
        self.query_one("#detail-errors").set_class(self.view != "errors", "-hidden")
        if self._last is not None:
            self._show_details(self._last)
        self._ask_errors()

    def scroll_view(self, action: str) -> bool:
        """Scroll the details or errors view by `action` (page_up, page_down) while the
        runs table keeps the keys; False in the overview, which has nothing to page."""
        if self.view == "overview":
            return False
        box = self.query_one("#detail-info" if self.view == "details" else "#detail-errors",
                             VerticalScroll)
        getattr(box, f"action_{action}")()
        return True

    def _ask_errors(self) -> None:
        """Read the selected run's worst examples on the engine thread (once per run)."""
        run_id = self._run_id
        if self.view != "errors" or run_id is None or run_id == self._errors_for:
            return
        self._errors_for = run_id
        self.query_one("#errors-text", Static).update(
            f"[dim]Reading the worst validation examples of run {run_id}…[/]")
        if self._remote is not None:  # its model and data are on that machine: read there
            self.screen.remotes.read_errors(self._remote, run_id, ERRORS_SHOWN, to=self)
            return
        path = self.screen.store.path
        self.app.engine.submit(
            lambda: review_errors(path, run_id) if run_id == self._errors_for else None,
            to=self)

    def on_errors_reviewed(self, msg: ErrorsReviewed) -> None:
        if (msg.remote, msg.run_id) != (self._remote, self._errors_for):
            return  # another run was selected meanwhile
        self.query_one("#errors-text", Static).update(
            Content.from_markup("\n".join(errors_lines(msg))))
        self.query_one(ErrorMarks).show(msg.examples, self._config_of(msg))

    def _config_of(self, msg: ErrorsReviewed) -> dict | None:
        """The reviewed run's config, for marking its examples (None: nothing to mark)."""
        from store import StoreError

        if msg.remote is not None:  # its data is on that machine: nothing to mark here
            return None
        try:
            return None if msg.error else self.screen.store.get_run(msg.run_id).config
        except StoreError:  # deleted meanwhile
            return None

    def _show_details(self, msg: RunDetailRefreshed) -> None:
        if self.view == "details":
            text = "\n".join(details_lines(msg.run, msg.parents))
            self.query_one("#info-text", Static).update(Content.from_markup(text))

    def on_resize(self, event: Resize) -> None:
        if self._last is not None:  # the stats line packs into the new width
            self._summary = ""
            self.show(self._last)

    def show_local(self, run_id: int) -> None:
        """Show this machine's run `run_id` again as last shown, if it was the last."""
        if self._local is not None and self._local.run.id == run_id and self._remote:
            self.show(self._local)

    def show(self, msg: RunDetailRefreshed) -> None:
        run = msg.run
        self._last = msg
        if msg.remote is None:
            self._local = msg
        log = self.query_one(EventLog)
        if (msg.remote, run.id) != (self._remote, self._run_id):
            self._run_id, self._remote, self._errors_for = run.id, msg.remote, None
            self._last_event_id = 0
            log.reset()
            self._ask_errors()
        for ev in msg.events:
            if ev.id > self._last_event_id:
                self._last_event_id = ev.id
                prefix = "!" if ev.level == "error" else "·"
                # A multi-line message (a traceback) keeps its lines, indented so none
                # can pass for an event of its own; controls are shown as escapes.
                message = printable(ev.message, multiline=True, limit=5000)
                log.add(Text(f"{prefix} " + message.replace("\n", "\n  ")))
        m = msg.latest
        tags = "  " + " ".join(f"[reverse] {literal(t, 40)} [/reverse]" for t in run.tags) \
            if run.tags else ""
        flag = f"  [b $warning]{badge(msg.watched)} watch[/]" if msg.watched else ""
        lines = [
            f"[b]{literal(run.name, 120)}[/b]  #{run.id}  {status_markup(run.status)}{flag}{tags}",
            literal(f"{run.model_id or '-'}  ·  {run.task or '-'}  ·  {run.dataset or '-'}",
                    400),
        ]
        if msg.remote is not None:
            lines.append(f"on remote [b]{literal(msg.remote, 40)}[/b]")
        if msg.spot is not None:
            lines.append(f"[$warning]{literal(msg.spot.detail, 400)}[/]")
        world = _world_line(run.env or {})
        if world:
            lines.append(world)
        if run.sweep_id:
            lines.append(_sweep_line(run, msg.sweep))
        # From the first step on (FirstStepTaken), not from the first logged one.
        step = current_step(m, msg.loss.steps[-1] if msg.loss else 0)
        if "loss" in m or step:
            lines += pack(stats_parts(m, run, step), self._text_width())
        lines += _result_lines(run)
        val = [f"{literal(k[4:], 40)} {metric(v, k)}" for k, v in sorted(m.items())
               if k.startswith("val_")]
        if val:
            lines += pack(["last evaluation:", *val], self._text_width())
        base = run.summary.get("baseline_majority_accuracy")
        if base is not None:
            lines.append(f"majority-class accuracy {metric(base)}")
        eta = run_eta(m, step, run)
        lines.append(f"duration {duration(run.duration_s)}" + (f"  ·  ETA {eta}" if eta else ""))
        if run.status == "running":
            lines.append(msg.gpu)
        if run.error:
            lines.append(f"[red]{literal(run.error, 2000)}[/red]")
        if run.notes:
            lines.append(f"[i]{literal(run.notes, 2000)}[/i]")
        self._show_summary(lines)
        self._show_details(msg)
        for name, series in (("loss", msg.loss), ("val", msg.val_metric)):
            chart = self.query_one(f"#{name}-curve", LineChart)
            if name == "val":
                chart.title = f"validation {series.name.removeprefix('val_')}"
            fresh = [Series(series.name, series.steps, series.values)]
            if fresh != chart.series:
                chart.series = fresh
            chart.set_class(len(series) < 2, "-hidden")

    def _text_width(self) -> int:
        """The summary's width in cells (0 before the first layout: no packing)."""
        return self.query_one("#detail-summary", Static).content_size.width

    def _show_summary(self, lines: list[str]) -> None:
        """Update the summary, re-laying out the screen only when its height changes.

        A layout pass re-arranges every widget on the screen; while a run trains
        the summary changes every second or so but keeps its shape.
        """
        text = "\n".join(lines)
        if text == self._summary:
            return
        self._summary = text
        summary = self.query_one("#detail-summary", Static)
        content = Content.from_markup(text)
        width, height = summary.content_size
        same_shape = width > 0 and content.get_height(summary.styles, width) == height
        summary.update(content, layout=not same_shape)


def stats_parts(m: dict, run, step: int) -> list[str]:
    """The stats line's items from the run's latest metrics `m`: step, loss, learning
    rate, gradient norm (the largest before clipping in the last logging interval: a
    blow-up shows here before the loss curve turns), and while it runs, its speed."""
    total = int(m.get("total_steps", 0))
    parts = [f"step {step}/{total}" if total else f"step {step}"]
    if "loss" in m:
        parts.append(f"loss {metric(m['loss'])}")
    if "lr" in m:
        parts.append(learning_rate(m["lr"], run.config))
    if "grad_norm" in m:
        parts.append(f"grad norm {metric(m['grad_norm'])}")
    if "samples_per_s" in m and run.status == "running":
        parts.append(f"{m['samples_per_s']:.1f} samples/s")
        if m.get("tokens_per_s"):
            parts.append(f"{m['tokens_per_s']:,.0f} tokens/s")
    return parts


def _world_line(env: dict) -> str | None:
    """Data parallel runs: how many processes on how many machines (and which)."""
    world, nodes = env.get("world_size"), env.get("nnodes")
    if not isinstance(world, int) or world < 2:
        return None
    line = f"data parallel: {world} processes"
    if isinstance(nodes, int) and nodes > 1:
        hosts = [h for h in env.get("node_hosts") or [] if isinstance(h, str)]
        line += f" on {nodes} nodes"
        if hosts:
            line += " (" + ", ".join(literal(h, 40) for h in hosts[:8]) + \
                (", ..." if len(hosts) > 8 else "") + ")"
    return line


def _sweep_line(run, sweep) -> str:
    """Which sweep the run is of, how big it is, and whether it is its best run."""
    line = f"sweep {literal(run.sweep_id, 40)}"
    if sweep is None:
        return line
    if sweep.best == run.id:
        return line + f" · [b]★ best of {sweep.size} runs[/b]"
    return line + f" · {sweep.size} runs"


def _result_lines(run) -> list[str]:
    """The run's result: the main metric of the model it keeps (so far, while it runs)."""
    from tui.run_result import run_result

    result = run_result(run)
    if result.value is None:
        return []
    at = f", step {result.step}" if result.step is not None else ""
    so_far = " so far" if run.status == "running" else ""
    return [f"[b]result {literal(result.short, 40)} {metric(result.value)}[/b] "
            f"(kept model{so_far}: {result.label}{at})"]

