"""`hubtune export` and `hubtune predict`: a completed run's model, shipped or used."""

from __future__ import annotations

from pathlib import Path

import click

from tui.cli.base import Failure, open_store
from tui.cli.output import dump_json, echo
from tui.safe_text import printable


@click.command("export")
@click.argument("run_id", type=int)
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--push", "repo", metavar="REPO", help="Also upload the folder to this hub repo.")
@click.option("--public", is_flag=True, help="Make a pushed repo public (default private).")
@click.option("--force", is_flag=True,
              help="Write into a non-empty TARGET, replacing files of the same names.")
def export(run_id: int, target: Path, repo: str | None, public: bool, force: bool) -> None:
    """Write a completed run's model to TARGET with a model card (and optionally push it)."""
    from engine.modeling.export import export_model, push_folder
    from store import data_dir

    store = open_store()
    run = store.get_run(run_id)
    model_dir = Path(run.output_dir or "") / "model"
    if run.status != "completed" or not (model_dir / "hubtune_head.json").is_file():
        raise Failure(f"Run {run_id} is {run.status} and has no final model; only a completed "
                      "run can be exported.")
    folder, loader = export_model(model_dir, target, config=run.config,
                                  summary=run.summary or {}, run_name=run.name or f"run-{run_id}",
                                  force=force, protected=data_dir())
    echo(f"Exported run {run_id} to {folder} (load it with {loader}).")
    if repo:
        echo(f"Pushed to {push_folder(folder, repo, private=not public)}.")


@click.command()
@click.argument("run_id", type=int)
@click.argument("inputs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print predictions as JSON.")
def predict(run_id: int, inputs: tuple[str, ...], as_json: bool) -> None:
    """Run a completed run's model on INPUTS and print the predictions.

    INPUTS are texts; words for token classification; "QUESTION ||| CONTEXT" for
    question answering; a text with the mask token for masked LM; image paths for
    image classification.
    """
    from engine.predict import Predictor

    store = open_store()
    run = store.get_run(run_id)
    if run.status != "completed":
        raise Failure(f"Run {run_id} is {run.status}; only a completed run has a final model.")
    predictions = Predictor(Path(run.output_dir) / "model").predict(list(inputs))
    if as_json:
        echo(dump_json([p.__dict__ for p in predictions]))
        return
    for p in predictions:
        if p.label is None:
            echo(f"{p.score:.4f}\t{printable(p.text)}")
        else:
            echo(f"{printable(p.label)}\t{p.score:.3f}\t{printable(p.text)}")
