"""The panel beside the runs table: one run's status, curves and event log."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.widgets import RichLog, Static

from tui.formatting import duration, literal, status_markup
from tui.messages import RunDetailRefreshed
from tui.safe_text import printable
from tui.widgets.chart import LineChart, Series


class RunDetail(Horizontal):
    """Shows whichever run the table's cursor is on; fed by RunDetailRefreshed."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._last_event_id = 0
        self._run_id: int | None = None
        self._summary = ""

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-left"):
            yield Static("Select a run to see it here.", id="detail-summary")
            yield LineChart("training loss", id="loss-curve", classes="-hidden")
            yield LineChart("validation", id="val-curve", classes="-hidden")
        yield RichLog(id="event-log", wrap=True, markup=False, max_lines=500, min_width=20)

    def on_mount(self) -> None:
        self.query_one("#event-log").border_title = "events"

    def show(self, msg: RunDetailRefreshed) -> None:
        run = msg.run
        log = self.query_one("#event-log", RichLog)
        if run.id != self._run_id:
            self._run_id = run.id
            self._last_event_id = 0
            log.clear()
        for ev in msg.events:
            if ev.id > self._last_event_id:
                self._last_event_id = ev.id
                prefix = "!" if ev.level == "error" else "·"
                # A multi-line message (a traceback) keeps its lines, indented so none
                # can pass for an event of its own; controls are shown as escapes.
                message = printable(ev.message, multiline=True, limit=5000)
                log.write(Text(f"{prefix} " + message.replace("\n", "\n  ")))
        m = msg.latest
        tags = "  " + " ".join(f"[reverse] {literal(t, 40)} [/reverse]" for t in run.tags) \
            if run.tags else ""
        lines = [
            f"[b]{literal(run.name, 120)}[/b]  #{run.id}  {status_markup(run.status)}{tags}",
            literal(f"{run.model_id or '-'}  ·  {run.task or '-'}  ·  {run.dataset or '-'}",
                    400),
        ]
        if msg.spot is not None:
            lines.append(f"[$warning]{literal(msg.spot.detail, 400)}[/]")
        world = _world_line(run.env or {})
        if world:
            lines.append(world)
        if run.sweep_id:
            lines.append(_sweep_line(run, msg.sweep))
        total = int(m.get("total_steps", 0))
        if "loss" in m:
            step = msg.loss.steps[-1] if msg.loss else 0
            progress = f"step {step}/{total}" if total else f"step {step}"
            parts = [progress, f"loss {m['loss']:.4f}"]
            if "lr" in m:
                parts.append(f"lr {m['lr']:.2e}")
            if "samples_per_s" in m and run.status == "running":
                parts.append(f"{m['samples_per_s']:.1f} samples/s")
                if m.get("tokens_per_s"):
                    parts.append(f"{m['tokens_per_s']:,.0f} tokens/s")
            lines.append("  ".join(parts))
        val = [f"{k[4:]} {v:.4f}" for k, v in sorted(m.items()) if k.startswith("val_")]
        if val:
            lines.append("validation: " + "  ".join(val))
        base = run.summary.get("baseline_majority_accuracy")
        if base is not None:
            lines.append(f"majority-class accuracy {base:.4f}")
        eta = _eta(m, msg.loss.steps[-1] if msg.loss else 0, run)
        lines.append(f"duration {duration(run.duration_s)}" + (f"  ·  ETA {eta}" if eta else ""))
        if run.status == "running":
            lines.append(msg.gpu)
        if run.error:
            lines.append(f"[red]{literal(run.error, 2000)}[/red]")
        if run.notes:
            lines.append(f"[i]{literal(run.notes, 2000)}[/i]")
        self._show_summary(lines)
        for name, series in (("loss", msg.loss), ("val", msg.val_metric)):
            chart = self.query_one(f"#{name}-curve", LineChart)
            if name == "val":
                chart.title = f"validation {series.name.removeprefix('val_')}"
            fresh = [Series(series.name, series.steps, series.values)]
            if fresh != chart.series:
                chart.series = fresh
            chart.set_class(len(series) < 2, "-hidden")

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


def _eta(m: dict, step: int, run) -> str | None:
    """Time left for a running run, from its pace so far."""
    total = m.get("total_steps")
    if run.status != "running" or not total or step <= 0 or not run.duration_s:
        return None
    left = run.duration_s / step * max(0, total - step)
    return duration(left)
