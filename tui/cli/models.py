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
    from engine.modeling.export import LOADER_WORDS, export_model, push_folder
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
    echo(f"Exported run {run_id} to {folder} (load it with "
         f"{LOADER_WORDS.get(loader, loader)}).")
    if repo:
        echo(f"Pushed to {push_folder(folder, repo, private=not public)}.")


@click.command()
@click.argument("run_id", type=int)
@click.argument("inputs", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print predictions as JSON.")
@click.option("--file", "data_file", type=click.Path(path_type=Path),
              help="Predict every row of this CSV, TSV, JSONL or Parquet file (or every "
                   "image of a folder) instead.")
@click.option("--column", metavar="C", help="The file's input column: text, words, source "
              "or image path (default: the run's data.text_column).")
@click.option("--out", "out_file", type=click.Path(path_type=Path),
              help="With --file: the CSV to write (input rows in order, plus predicted and "
                   "score columns).")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def predict(run_id: int, inputs: tuple[str, ...], as_json: bool, data_file: Path | None,
            column: str | None, out_file: Path | None, batch_size: int, force: bool) -> None:
    """Run a completed run's model on INPUTS (or every row of --file) and print the
    predictions.

    INPUTS are texts; words for token classification; "QUESTION ||| CONTEXT" for
    question answering; a text with the mask token for masked LM; image paths for
    image classification.
    """
    from engine.predict import Predictor

    store = open_store()
    run = store.get_run(run_id)
    if run.status != "completed":
        raise Failure(f"Run {run_id} is {run.status}; only a completed run has a final model.")
    if data_file is not None or out_file is not None:
        if inputs or data_file is None or out_file is None:
            raise Failure("Batch prediction takes --file FILE and --out OUT.csv and no "
                          "INPUTS; give both options, or only INPUTS.")
        _predict_file(run, data_file, column, out_file, batch_size, force)
        return
    if not inputs:
        raise Failure("Give INPUTS to predict on, or --file FILE --out OUT.csv for a whole "
                      "file.")
    predictions = Predictor(Path(run.output_dir) / "model").predict(list(inputs))
    if as_json:
        echo(dump_json([p.__dict__ for p in predictions]))
        return
    for p in predictions:
        if p.label is None:
            echo(f"{p.score:.4f}\t{printable(p.text)}")
        else:
            echo(f"{printable(p.label)}\t{p.score:.3f}\t{printable(p.text)}")


def _predict_file(run, data_file: Path, column: str | None, out_file: Path, batch_size: int,
                  force: bool) -> None:
    import sys

    from engine.core.config import RunConfig
    from engine.core.outputs import check_new_file, write_file
    from engine.predict import predict_file
    from store import data_dir

    check_new_file(out_file, force=force, protected=data_dir())  # before minutes of work
    cfg = RunConfig.from_dict(run.config)
    bars: list = []

    def progress(rows: int, total: int) -> None:
        if not bars:  # the total is known once the file is read
            bars.append(click.progressbar(length=total, label="Predicting", file=sys.stderr))
            bars[0].__enter__()
        bars[0].update(rows)

    try:
        result = predict_file(Path(run.output_dir) / "model", cfg, data_file, column=column,
                              batch_size=batch_size, progress=progress)
    finally:
        if bars:
            bars[0].__exit__(None, None, None)
    table = result.table
    sep = "\t" if out_file.suffix.lower() == ".tsv" else ","
    path = write_file(out_file, lambda tmp: table.to_csv(tmp, index=False, sep=sep),
                      force=force, protected=data_dir())
    echo(f"Wrote {len(table):,} predictions to {path}.")
    if result.metric is not None:
        name, value, labelled = result.metric
        echo(f"{name} {value:.4f} on {labelled:,} labelled rows ({printable(cfg.data.label_column)}).")

