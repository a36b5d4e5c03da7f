"""Small text helpers shared by screens and widgets (no textual imports)."""

from __future__ import annotations

STATUS_STYLE = {
    "queued": "dim",
    "running": "bold cyan",
    "completed": "green",
    "failed": "bold red",
    "stopped": "yellow",
    "interrupted": "magenta",
    "pruned": "dark_orange",
}


def status_markup(status: str) -> str:
    """A run's status as markup; one the store should never hold is shown as written."""
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/]" if style else literal(status)


def status_text(status: str):
    """A rich Text for table cells (markup strings would be re-parsed each render)."""
    from rich.text import Text

    from tui.safe_text import printable

    return Text(printable(status), style=STATUS_STYLE.get(status, ""))


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


COUNTS = ("epochs", "steps", "step", "best_step", "total_steps", "examples", "train_rows",
          "validation_rows")
"""Summary keys that count things: shown as whole numbers (`epochs 2`, not `2.0000`)."""


def metric(value, name: str = "") -> str:
    """A metric's value as every screen and command shows it: three decimals (`acc 0.600`
    beside `acc 0.683`, never `0.6`), a count (`name` in COUNTS) whole, a value too small
    or too large for that in scientific or grouped form; "-" for none."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    if not math.isfinite(value):
        return str(value)
    if name.removeprefix("val_") in COUNTS and float(value).is_integer():
        return f"{int(value):,}"
    if value and abs(value) < 0.001:
        return f"{value:.2e}"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def started(run, *, seconds: bool = False) -> str:
    """When `run` started (`11-04 09:00`, with `seconds` the year and seconds too):
    "queued" while it waits, never its creation time; "-" for one that never started."""
    if not run.started_utc:
        return "queued" if run.status == "queued" else "-"
    return run.started_utc[:19].replace("T", " ") if seconds else \
        run.started_utc[5:16].replace("T", " ")


def learning_rate(logged: float, config: dict | None) -> str:
    """The headline `lr`: the base rate (train.learning_rate) as scheduled now, and whether
    some layer groups train at another one.

    The loop logs the rate of the optimizer's first group, the one with the highest rate
    (a head at 1e-3, say); every group follows the same schedule, so the base rate now is
    that scaled by base / highest."""
    train = (config or {}).get("train") or {}
    base = train.get("learning_rate")
    groups = [v for v in (train.get("group_learning_rates") or {}).values()
              if isinstance(v, (int, float))]
    head = train.get("head_learning_rate")
    differ = bool(groups) or train.get("layer_lr_decay") is not None or (
        isinstance(head, (int, float)) and head != base)
    if not differ or not isinstance(base, (int, float)) or base <= 0:
        return f"lr {logged:.2e}"
    highest = max([base, *groups, *([head] if isinstance(head, (int, float)) else [])])
    return f"lr {logged * base / highest:.2e} (base; groups differ)"


def human_bytes(n: float | None) -> str:
    """1234567 -> '1.2 MB' (decimal units, as the hub shows sizes)."""
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def main_metric(run) -> str:
    """The metric a run watched (its summary says once it has one), else its task's."""
    from engine.tasks import REGISTRY

    registration = REGISTRY.get(run.task or "")
    return (run.summary or {}).get("watched_metric") or (registration.metric if registration
                                                         else "accuracy")


def literal(text: object, limit: int | None = None, *, multiline: bool = False) -> str:
    """User text (names, tags, notes, errors, predictions) made safe to put inside content
    markup: brackets in it are shown, never read as tags, and control characters are
    shown as escapes (tui.safe_text); `limit` cuts it with an ellipsis, and newlines are
    kept only if `multiline`.

    Every `[` is escaped, not only those that look like a tag (`textual.markup.escape`
    leaves `[/` of `[bold]x[/` bare, and the closing tag after it then fails to parse).
    Content markup has no escape for a backslash, so a trailing one, which would escape
    the tag that follows it, is kept apart from it by a zero-width space.
    """
    from tui.safe_text import printable

    s = printable(text, multiline=multiline, limit=limit).replace("[", "\\[")
    return s + "\u200b" if s.endswith("\\") else s


def styled(template: str, **values: object):
    """Content from our own markup `template` with `$name` holes filled by untrusted
    `values`: a value is never parsed as markup, and its control characters are shown
    as escapes; each value stays on one line (a newline in it shows as `\\n`)."""
    from textual.content import Content

    from tui.safe_text import printable

    return Content.from_markup(template, **{k: printable(v) for k, v in values.items()})


def plain(text: object, *, multiline: bool = False, limit: int | None = None):
    """Untrusted text as Content for a Static or Label: never markup, controls escaped."""
    from textual.content import Content

    from tui.safe_text import printable

    return Content(printable(text, multiline=multiline, limit=limit))


def cell(text: object, style: str = ""):
    """A DataTable cell (or column label, Select or Tree label) shown as written: str
    cells are parsed as markup; control characters escaped (tui.safe_text)."""
    from rich.text import Text

    from tui.safe_text import printable

    return Text(printable(text), style=style)


SHORT_METRIC = {"accuracy": "acc", "perplexity": "ppl", "micro_f1": "µF1", "macro_f1": "F1",
                "exact_match": "EM", "loss": "loss", "f1": "F1", "chrf": "chrF", "bleu": "BLEU"}


def best_metric(run) -> tuple[str, float | None]:
    """The run's result, its main metric at the evaluation whose model it keeps (the best
    with train.restore_best, else the last; tui.run_result): ('acc', 0.761)."""
    from store import kept_metrics

    name = main_metric(run)
    value = kept_metrics(run.summary or {})[1].get(name)
    return SHORT_METRIC.get(name, name), value


def current_step(latest: dict[str, float], logged_step: int) -> int:
    """The step a run has reached: its newest logged step, or its first step before the
    first logged one (engine.core.events.FirstStepTaken)."""
    from engine.core.events import STEP_METRIC

    return max(logged_step, int(latest.get(STEP_METRIC) or 0))


def run_eta(latest: dict[str, float], step: int, run) -> str | None:
    """Time left for a running run at the pace of its last logging interval (the run
    panel, `train` and `runs follow` all show this one). None before the first interval
    ends: the time so far is mostly loading the model and data, and dividing it by one
    step promised hours for a run of minutes."""
    total = latest.get("total_steps")
    if run.status != "running" or not total or step <= 0:
        return None
    pace = latest.get("steps_per_s")
    if pace:
        return duration(max(0, total - step) / pace)
    if "loss" not in latest or not run.duration_s:  # before the first logged interval
        return None
    # A run recorded before steps_per_s was logged (a remote box on an older hubtune).
    return duration(run.duration_s / step * max(0, total - step))


def short_task(task: str | None) -> str:
    """A task name narrow enough for a table column ('text-classification' -> 'text-class')."""
    from engine.tasks import REGISTRY

    registration = REGISTRY.get(task or "")
    return (registration.short if registration else None) or task or "-"
