"""`hubtune runs errors` and `runs compare A B --examples`: a run's validation examples,
the worst first, and where two runs disagree. Each example's input is re-read from the
run's data (engine.trained.review); the per-example results come from the store.

Imports neither textual nor torch at module level (the CLI contract).
"""

from __future__ import annotations

import click

from tui.cli.base import RUN_ID, Failure, open_store
from tui.cli.output import cut, dump_json, echo

LOSS_NAMES = {"cross_entropy": "loss", "binary_cross_entropy": "loss",
              "squared_error": "sq.err", "chrf_gap": "100-chrF", "f1_gap": "100-F1",
              "tag_errors": "errors", "token_loss": "loss"}
"""The LOSS column's header per kind of per-example loss."""


def _recorded(store, run_id: int):
    """(run, config, prediction set) of a run with per-example results, or a Failure.

    The config reads the data as the run read it (hub data at its recorded commit), and
    a run whose data files changed since is refused here (engine.trained.review.as_trained); a
    run that cannot be checked gets a note on stderr."""
    from engine.core.config import RunConfig
    from engine.trained.review import as_trained, check_reviewable

    run = store.get_run(run_id)
    cfg = RunConfig.from_dict(run.config)
    check_reviewable(cfg.head.task)
    recorded = store.prediction_set(run_id)
    if recorded is None and run.status in ("queued", "running"):
        doing = "training" if run.status == "running" else "queued"
        raise Failure(f"Run {run_id} is still {doing} and has no evaluated examples yet; "
                      f"they come with its first evaluation (`hubtune runs follow {run_id}` "
                      "shows it).")
    if recorded is None:
        raise Failure(f"Run {run_id} has no per-example results (it never finished an "
                      "evaluation, or it trained before hubtune recorded them); "
                      f"`hubtune runs fork {run_id}` trains it again with them.")
    cfg, note = as_trained(run_id, cfg, run.summary)
    if note:
        echo(f"Note: {note}", err=True)
    return run, cfg, recorded


@click.command("errors")
@click.argument("run_id", type=RUN_ID)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1),
              help="How many examples to show.")
@click.option("--remote", metavar="NAME", help="A run of this remote (`hubtune remote ls`).")
@click.option("--json", "as_json", is_flag=True, help="Print the examples as JSON.")
def runs_errors(run_id: int, limit: int, remote: str | None, as_json: bool) -> None:
    """The validation examples the run's kept model gets most wrong, highest loss first."""
    from engine.trained.review import join_inputs, validation_inputs

    if remote is not None:  # its data and results are on that machine: read there
        from tui.cli.remote import echo_remote

        return echo_remote(remote, ["runs", "errors", str(run_id), "--limit", str(limit),
                                    *(["--json"] if as_json else [])])
    store = open_store()
    run, cfg, recorded = _recorded(store, run_id)
    worst = join_inputs(run_id, store.worst_examples(run_id, limit), validation_inputs(cfg),
                        recorded.examples)
    wrong = sum(not r.correct for r in store.example_results(run_id).values())
    model_step = run.summary.get("model_step")
    if as_json:
        echo(dump_json({"run": run_id, "step": recorded.step, "model_step": model_step,
                        "examples": recorded.examples, "stored": recorded.stored,
                        "wrong": wrong, "loss_kind": recorded.loss_kind,
                        "errors": [r.to_json() for r in worst]}))
        return
    if model_step is not None and model_step != recorded.step:
        echo(f"Note: these results are of step {recorded.step}, but the saved model is of "
             f"step {model_step} (its best checkpoint was gone).", err=True)
    share = (f"the {recorded.stored:,} worst kept" if recorded.stored < recorded.examples
             else "all kept")
    loss_name = LOSS_NAMES.get(recorded.loss_kind, "loss")
    echo(f"Run {run_id}: {len(worst)} highest-{loss_name} of {recorded.examples:,} validation "
         f"examples ({share}; {wrong:,} wrong), model of step {recorded.step}")
    if recorded.loss_kind in TEXT_KINDS:
        _echo_text_examples(worst, loss_name)
        return
    echo(f"{'EX':>5} {'ROW':>6}  {'LABEL':<16} {'PREDICTED':<16} {'CONF':>5} "
         f"{loss_name:>8}  INPUT")
    for r in worst:
        conf = f"{r.confidence:.2f}" if r.confidence is not None else "-"
        echo(f"{r.example:>5} {r.row if r.row is not None else '-':>6}  "
             f"{cut(r.label, 16):<16} {cut(r.predicted, 16):<16} {conf:>5} {r.loss:>8.3f}  "
             f"{'' if r.correct else '✗ '}{cut(r.input, 70)}")


TEXT_KINDS = ("chrf_gap", "f1_gap", "tag_errors", "token_loss")
"""Per-example losses of tasks whose labels are text (tags, answers, generated text): their
examples print as blocks, too wide for table cells."""


def _echo_text_examples(worst, loss_name: str) -> None:
    """One block per example: its numbers, then input, label and prediction a line each."""
    for r in worst:
        conf = f"  conf {r.confidence:.2f}" if r.confidence is not None else ""
        row = f"  row {r.row}" if r.row is not None else ""
        loss = f"{r.loss:.0f}" if loss_name == "errors" else f"{r.loss:.3f}"
        echo(f"#{r.example}{row}  {loss_name} {loss}{conf}"
             f"{'' if r.correct else '  ✗'}")
        for name, text in (("input", r.input), ("label", r.label),
                           ("predicted", r.predicted)):
            echo(f"  {name + ':':<11}{cut(text, 110)}")


def compare_examples(run_ids: tuple[int, ...], as_json: bool, limit: int | None = None) -> None:
    """`runs compare A B --examples`: the validation examples two runs predict differently."""
    from engine.trained.review import disagreements, same_validation

    if len(run_ids) != 2:
        raise Failure(f"--examples compares exactly two runs, not {len(run_ids)}; give two "
                      "run ids.")
    store = open_store()
    (a, cfg_a, set_a), (b, cfg_b, set_b) = (_recorded(store, i) for i in run_ids)
    ids = (a.id, b.id)
    inputs = same_validation(cfg_a, cfg_b, ids)
    first, second = store.example_results(a.id), store.example_results(b.id)
    found = disagreements(first, second, inputs)
    shared = len(first.keys() & second.keys())
    wins = {side: sum(d.right == side for d in found) for side in ("first", "second")}
    shown = found[:limit] if limit else found
    if as_json:
        echo(dump_json({"runs": list(ids), "compared": shared, "examples": set_a.examples,
                        "disagree": len(found), "right": {str(a.id): wins["first"],
                                                          str(b.id): wins["second"]},
                        "disagreements": [d.to_json(ids) for d in shown]}))
        return
    partly = "" if shared == set_a.examples else f" (the {shared:,} both runs kept)"
    echo(f"Runs {a.id} and {b.id} disagree on {len(found):,} of {shared:,} validation "
         f"examples{partly}: run {a.id} is right on {wins['first']:,}, run {b.id} on "
         f"{wins['second']:,}, neither on {len(found) - sum(wins.values()):,}.")
    if not found:
        return
    if set_a.loss_kind in TEXT_KINDS:
        _echo_text_disagreements(shown, ids)
    else:
        _echo_disagreement_table(shown, ids)
    if len(shown) < len(found):
        echo(f"... {len(found) - len(shown):,} more (--limit, or --json for all).")


def _echo_text_disagreements(shown, ids: tuple[int, int]) -> None:
    for d in shown:
        right = {"first": f"run {ids[0]} right", "second": f"run {ids[1]} right"}.get(
            d.right, "neither right")
        row = f"  row {d.row}" if d.row is not None else ""
        echo(f"#{d.example}{row}  {right}")
        lines = (("input", d.input), ("label", d.label), (f"run {ids[0]}", d.predicted[0]),
                 (f"run {ids[1]}", d.predicted[1]))
        for name, text in lines:
            echo(f"  {name + ':':<11}{cut(text, 110)}")


def _echo_disagreement_table(shown, ids: tuple[int, int]) -> None:
    a, b = ids
    echo(f"{'EX':>5} {'ROW':>6}  {'LABEL':<14} {'RUN ' + str(a):<14} "
         f"{'RUN ' + str(b):<14} {'RIGHT':<7} INPUT")
    for d in shown:
        right = {"first": str(a), "second": str(b)}.get(d.right, "neither")
        echo(f"{d.example:>5} {d.row if d.row is not None else '-':>6}  {cut(d.label, 14):<14} "
             f"{cut(d.predicted[0], 14):<14} {cut(d.predicted[1], 14):<14} {right:<7} "
             f"{cut(d.input, 60)}")


def class_report_json(summary: dict) -> dict | None:
    """The run's per-class scores and confusion with class names, or None (no classes)."""
    report = summary.get("class_report")
    if not isinstance(report, dict):
        return None
    names = list(summary.get("labels") or [])

    def name(i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    return {
        "classes": report.get("classes"),
        "worst_only": bool(report.get("worst_only")),
        "per_class": [{"label": name(i), "precision": p, "recall": r, "f1": f, "support": n}
                      for i, p, r, f, n in report.get("per_class", [])],
        "confused_pairs": [{"label": name(t), "predicted": name(p), "count": c}
                           for t, p, c in report.get("confused_pairs", [])],
        "confusion": report.get("confusion"),
        "labels": names,
    }


def echo_class_report(summary: dict) -> None:
    """Per-class precision/recall/F1, the most confused pairs, and the whole confusion
    matrix when there are few classes (`runs show`)."""
    report = class_report_json(summary)
    if report is None or not report["per_class"]:
        return
    title = "worst classes by F1" if report["worst_only"] else "per class"
    echo(f"  {title:<30} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}")
    for c in report["per_class"]:
        echo(f"    {cut(c['label'], 28):<28} {c['precision']:>9.3f} {c['recall']:>7.3f} "
             f"{c['f1']:>6.3f} {c['support']:>8}")
    grid = report["confusion"]
    if grid is not None:
        labels = report["labels"] or [str(i) for i in range(len(grid))]
        width = max(6, *(min(len(x), 10) for x in labels))
        echo("  confusion (rows true, columns predicted)")
        echo(f"    {'':<{width}} " + " ".join(f"{cut(x, 10):>{width}}" for x in labels))
        for label, row in zip(labels, grid, strict=False):
            echo(f"    {cut(label, 10):<{width}} " + " ".join(f"{v:>{width}}" for v in row))
    elif report["confused_pairs"]:
        echo("  most confused (true -> predicted)")
        for p in report["confused_pairs"][:10]:
            echo(f"    {cut(p['label'], 24)} -> {cut(p['predicted'], 24)}  {p['count']}")
