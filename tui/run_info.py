"""The run panel's text beyond its curves: the details view (parents and what changed
since, tags, notes, output folder, per-class scores, the config) and the errors view
(the validation examples the kept model gets most wrong), as lines of content markup.

No Textual here: the lines are tested as text. Untrusted text (names, notes, labels,
inputs, config values) goes through `literal`. The errors are read on the engine thread
(`review_errors`), never on the UI's.
"""

from __future__ import annotations

from engine.runs.lineage import Parent, config_diff, flatten, show_value
from tui.formatting import literal
from tui.messages import ErrorsReviewed

ERRORS_SHOWN = 30
"""Examples the errors view lists, worst first."""


def pack(items: list[str], width: int, sep: str = "  ") -> list[str]:
    """Plain `items` joined by `sep` into lines of at most `width` cells, breaking only
    between items (a stats line never splits `loss 0.41` across two lines)."""
    lines: list[str] = []
    for item in items:
        if lines and width > 0 and len(lines[-1]) + len(sep) + len(item) <= width:
            lines[-1] += sep + item
        elif lines and width <= 0:
            lines[-1] += sep + item
        else:
            lines.append(item)
    return lines


def details_lines(run, parents: list[tuple[Parent, object | None]]) -> list[str]:
    """Where the run comes from and what it changed, its tags, notes, output folder,
    per-class scores, and its whole config."""
    lines = [f"[b]{literal(run.name, 120)}[/b]  #{run.id}"]
    for parent, record in parents:
        what = "fork of" if parent.kind == "fork" else "continues from the model of"
        if record is None:
            lines.append(f"[b]{what}[/b] run {parent.run_id} (deleted since)")
            continue
        lines.append(f"[b]{what}[/b] run {parent.run_id} {literal(record.name, 80)}")
        if parent.kind == "fork":
            changes = config_diff(record.config, run.config)
            if not changes:
                lines.append("  same config")
            for c in changes:
                lines.append(f"  {literal(c.key)}  {literal(show_value(c.old), 60)} → "
                             f"[b]{literal(show_value(c.new), 60)}[/b]")
    lines.append("[b]tags[/b]    " + (literal(", ".join(run.tags), 400) or "[dim]none (t)[/]"))
    notes = literal(run.notes, 2000, multiline=True).replace("\n", "\n        ")
    lines.append("[b]notes[/b]   " + (notes or "[dim]none (n)[/]"))
    lines.append("[b]output[/b]  " + (literal(run.output_dir, 400) if run.output_dir else
                                      "[dim]none yet[/]"))
    lines += class_report_lines(run.summary)
    lines.append("[b]config[/b]")
    for key, value in flatten(run.config).items():
        if key != "base_dir":
            lines.append(f"  {literal(key)}: {literal(show_value(value), 200)}")
    return lines


def class_report_lines(summary: dict) -> list[str]:
    """Per-class precision/recall/F1, and the confusion matrix (few classes) or the most
    confused pairs (many)."""
    from tui.cli.review import class_report_json

    report = class_report_json(summary or {})
    if report is None or not report["per_class"]:
        return []
    title = "worst classes by F1" if report["worst_only"] else "per class"
    lines = [f"[b]{title:<24}[/b] {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"]
    for c in report["per_class"]:
        lines.append(f"  {_cell(c['label'], 22)} {c['precision']:>9.3f} {c['recall']:>7.3f} "
                     f"{c['f1']:>6.3f} {c['support']:>8}")
    grid, labels = report["confusion"], report["labels"]
    if grid is not None:
        labels = labels or [str(i) for i in range(len(grid))]
        width = max(6, *(min(len(x), 10) for x in labels))
        lines.append("[b]confusion[/b] [dim](rows true, columns predicted)[/]")
        lines.append(f"  {'':<{width}} " + " ".join(_cell(x, width, right=True)
                                                    for x in labels))
        for label, row in zip(labels, grid, strict=False):
            lines.append(f"  {_cell(label, width)} " + " ".join(f"{v:>{width}}" for v in row))
    elif report["confused_pairs"]:
        lines.append("[b]most confused[/b] [dim](true → predicted)[/]")
        for p in report["confused_pairs"][:10]:
            lines.append(f"  {literal(p['label'], 24)} → {literal(p['predicted'], 24)}  "
                         f"{p['count']}")
    return lines


def _cell(text: str, width: int, *, right: bool = False) -> str:
    from tui.safe_text import printable

    shown = printable(text, limit=width)
    padded = f"{shown:>{width}}" if right else f"{shown:<{width}}"
    return literal(padded)


def review_errors(store_path, run_id: int, limit: int = ERRORS_SHOWN) -> ErrorsReviewed:
    """The run's worst validation examples with their inputs (a job for the engine
    thread: it reads the run's data again, as `hubtune runs errors` does)."""
    from engine.core.config import RunConfig
    from engine.core.errors import HubtuneError
    from engine.trained.review import as_trained, check_reviewable, join_inputs, validation_inputs
    from store import RunStore, StoreError

    store = RunStore(store_path)  # this thread's own connection
    try:
        run = store.get_run(run_id)
        cfg = RunConfig.from_dict(run.config)
        check_reviewable(cfg.head.task)
        recorded = store.prediction_set(run_id)
        if recorded is None:
            return ErrorsReviewed(run_id, None, [], error=(
                f"Run {run_id} has no per-example results yet: they are recorded at each "
                "evaluation of the model it keeps (f forks it to train again with them)."))
        as_read, _ = as_trained(run_id, cfg, run.summary)  # refused if its files changed
        worst = join_inputs(run_id, store.worst_examples(run_id, limit),
                            validation_inputs(as_read), recorded.examples)
        wrong = sum(not r.correct for r in store.example_results(run_id).values())
        return ErrorsReviewed(run_id, recorded, worst, wrong=wrong)
    except (HubtuneError, StoreError) as exc:
        return ErrorsReviewed(run_id, None, [], error=str(exc))
    finally:
        store.close()


def errors_lines(msg: ErrorsReviewed) -> list[str]:
    """The errors view: a line on what was evaluated, then each example, worst first."""
    if msg.error is not None:
        return [f"[$warning]{literal(msg.error, 1000)}[/]"]
    rec = msg.recorded
    lines = [f"[b]worst {len(msg.examples)}[/b] of {rec.examples:,} validation examples "
             f"({msg.wrong:,} wrong), model of step {rec.step}",
             "[dim]each: the true label → [b]what the model predicted[/b], its confidence "
             "and loss, and the data row[/]"]
    for r in msg.examples:
        mark = "[green]✓[/]" if r.correct else "[red]✗[/]"
        conf = f"{r.confidence:.2f}" if r.confidence is not None else "-"
        row = f"row {r.row}" if r.row is not None else f"#{r.example}"
        lines.append(f"{mark} {literal(r.label, 24)} → [b]{literal(r.predicted, 24)}[/b]  "
                     f"conf {conf}  loss {r.loss:.3f}  [dim]{row}[/]")
        lines.append(f"   {literal(r.input, 300)}")
    return lines
