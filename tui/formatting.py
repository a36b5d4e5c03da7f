"""Small text helpers shared by screens and widgets (no textual imports)."""

from __future__ import annotations

STATUS_STYLE = {
    "queued": "dim",
    "running": "bold cyan",
    "completed": "green",
    "failed": "bold red",
    "stopped": "yellow",
    "interrupted": "magenta",
}


def status_markup(status: str) -> str:
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{status}[/]" if style else status


def status_text(status: str):
    """A rich Text for table cells (markup strings would be re-parsed each render)."""
    from rich.text import Text

    return Text(status, style=STATUS_STYLE.get(status, ""))


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def metric(value) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


def human_bytes(n: float | None) -> str:
    """1234567 -> '1.2 MB' (decimal units, as the hub shows sizes)."""
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


MAIN_METRIC = {
    "regression": "loss", "multi-label-classification": "micro_f1",
    "token-classification": "f1", "question-answering": "f1", "masked-lm": "perplexity",
    "causal-lm": "perplexity", "seq2seq": "chrf",
}
"""The validation metric each task is judged by (as engine/tasks sets `watch`)."""


def main_metric(run) -> str:
    """The metric a run watched (its summary says once it has one), else its task's."""
    return (run.summary or {}).get("watched_metric") or MAIN_METRIC.get(run.task or "",
                                                                        "accuracy")


def literal(text: object) -> str:
    """User text (names, tags, notes, errors, predictions) made safe to put inside markup:
    brackets in it are shown, never read as styles (a stray `[/x]` would raise)."""
    from textual.markup import escape

    from tui.safe_text import printable

    return escape(printable(text))


def cell(text: str):
    """A DataTable cell shown as written (str cells are parsed as markup), control
    characters escaped (tui.safe_text)."""
    from rich.text import Text

    from tui.safe_text import printable

    return Text(printable(text))


SHORT_METRIC = {"accuracy": "acc", "perplexity": "ppl", "micro_f1": "µF1", "macro_f1": "F1",
                "exact_match": "EM", "loss": "loss", "f1": "F1", "chrf": "chrF", "bleu": "BLEU"}


def best_metric(run) -> tuple[str, float | None]:
    """The run's main metric at its best evaluation (else its last): ('acc', 0.761)."""
    name = main_metric(run)
    summary = run.summary or {}
    value = summary.get(f"best_{name}", summary.get(f"final_{name}"))
    return SHORT_METRIC.get(name, name), value if isinstance(value, (int, float)) else None


SHORT_TASK = {"text-classification": "text-class", "image-classification": "image-class",
              "token-classification": "token-class", "multi-label-classification": "multi-label",
              "text-pair-classification": "text-pair", "question-answering": "QA",
              "feature-extraction": "features"}


def short_task(task: str | None) -> str:
    """A task name narrow enough for a table column ('text-classification' -> 'text-class')."""
    return SHORT_TASK.get(task or "", task or "-")
