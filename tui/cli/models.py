"""`hubtune export` and `hubtune predict`: a completed run's model, shipped or used."""

from __future__ import annotations

from pathlib import Path

import click

from tui.cli.base import RUN_ID, Failure, open_store
from tui.cli.output import dump_json, echo
from tui.safe_text import printable


@click.command("export", short_help="Export a run's trained model; not its metrics.")
@click.argument("run_id", type=RUN_ID)
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--push", "repo", metavar="OWNER/NAME",
              help="Also upload the folder to this hub repo (created if needed; the token is "
                   "huggingface_hub's: HF_TOKEN or `hf auth login`, never stored by hubtune). "
                   "Run it again to resume a push cut off midway.")
@click.option("--private/--public", "private", default=True, show_default=True,
              help="Whether a repo the push creates is private.")
@click.option("--onnx", "onnx", is_flag=True,
              help="Also write model.onnx, checked against PyTorch on validation examples "
                   "(the onnx extra).")
@click.option("--quantize", is_flag=True,
              help="With --onnx: also a dynamically quantised int8 copy, with its agreement.")
@click.option("--force", is_flag=True,
              help="Write into a non-empty TARGET, replacing files of the same names.")
@click.option("--remote", metavar="NAME",
              help="A run of this remote (`hubtune remote ls`): exported there and brought "
                   "back over SSH into TARGET here (--onnx and --push then run here).")
def export(run_id: int, target: Path, repo: str | None, private: bool, onnx: bool,
           quantize: bool, force: bool, remote: str | None) -> None:
    """Export a completed run's trained model to TARGET, to load or push to the hub.

    Writes the model, its tokenizer or processor and a model card (with --push, uploads
    the folder too). A run's metrics and history are `hubtune runs export`'s."""
    from engine.trained.export import LOADER_WORDS, push_folder
    from store import data_dir

    if quantize and not onnx:  # before anything is written
        raise Failure("--quantize makes an int8 copy of the ONNX model: add --onnx.")
    if remote is not None:
        from tui.cli.remote_steer import export_remote

        folder, loader, config = export_remote(remote, run_id, target, force=force)
    else:
        folder, loader, config = export_run(open_store(), run_id, target, force=force,
                                            protected=data_dir())
    echo(f"Exported run {run_id} to {folder} (load it with "
         f"{LOADER_WORDS.get(loader, loader)}).")
    if onnx:
        _add_onnx(folder, loader, config, quantize)
    if repo:
        echo(f"Pushed to {push_folder(folder, repo, private=private)}.")


def export_run(store, run_id: int, target: Path, *, force: bool,
               protected: Path | None) -> tuple[Path, str, dict]:
    """Export this machine's completed run `run_id` to `target`: (folder, how to load it,
    the run's config). Also what `serve` runs for another machine's `export --remote`."""
    from engine.core.outputs import refuse_overwriting_input
    from engine.trained.export import export_model

    run = store.get_run(run_id)
    model_dir = Path(run.output_dir or "") / "model"
    if run.status != "completed" or not (model_dir / "hubtune_head.json").is_file():
        raise Failure(f"Run {run_id} is {run.status} and has no final model; only a completed "
                      "run can be exported.")
    refuse_overwriting_input(target, [(f, "the run's base model folder")
                                      for f in _base_model_folders(run.config)], folder=True)
    folder, loader = export_model(model_dir, target, config=run.config,
                                  summary=run.summary or {}, run_name=run.name or f"run-{run_id}",
                                  force=force, protected=protected)
    return folder, loader, run.config


def _add_onnx(folder: Path, loader: str, config: dict, quantize: bool) -> None:
    """model.onnx (and model.int8.onnx) beside the export, its check in the model card."""
    from engine.trained.export import add_onnx

    report = add_onnx(folder, loader, config, quantize=quantize)
    echo(f"Wrote {report.path.name}: ONNX Runtime matches PyTorch to within "
         f"{report.max_abs_diff:.1e} on {report.examples} examples.")
    if report.int8_path is not None:
        kept = "a vector close to fp32's" if report.vectors else "the same class as fp32"
        echo(f"Wrote {report.int8_path.name}: {kept} on {report.int8_agreement:.1%} of them.")


def _validation_texts(config: dict, limit: int = 64) -> list[str] | None:
    from engine.trained.export import validation_texts

    return validation_texts(config, limit)


def _base_model_folders(config: dict) -> list[Path]:
    """Where the run's base model may live on this machine: model.id as a folder (as
    given, or beside the config), and a hub model's folder in the local cache. Export
    reads these, so `--force` must not write over them."""
    model = config.get("model") if isinstance(config, dict) else None
    ref = model.get("id") if isinstance(model, dict) else None
    if not isinstance(ref, str) or not ref or ref.startswith(("run:", "torchvision:")):
        return []  # a run's model lives in hubtune's data folder, which is protected anyway
    folders = [Path(ref).expanduser(), Path(str(config.get("base_dir") or ".")) / ref]
    from engine.core.config import ModelSpec
    from engine.core.errors import HubtuneError
    from engine.modeling.loading import local_files_only, resolve_model_path

    try:
        with local_files_only():
            folders.append(resolve_model_path(ModelSpec(id=ref, revision=str(
                model.get("revision") or "main"))))
    except (HubtuneError, OSError, ValueError):
        pass  # not on this machine: nothing of it to overwrite
    return [f for f in folders if f.is_dir()]


@click.command()
@click.argument("run_id", type=RUN_ID)
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
@click.option("--encoding", metavar="E", help="With --file: the file's text encoding "
              "(default: found from the file: UTF-8 or a byte-order mark; else the run's "
              "data.encoding, with a note).")
@click.option("--runtime", type=click.Choice(["torch", "onnx"]), default="torch",
              show_default=True,
              help="With --file: onnx predicts with ONNX Runtime on the CPU (sequence "
                   "classification; made once per run, checked against PyTorch).")
@click.option("--quantize", is_flag=True,
              help="With --runtime onnx: the dynamically quantised int8 model.")
@click.option("--device", metavar="D", help="Where the model runs: cpu, cuda (a GPU no run "
              "holds), cuda:N or gpuN (a slot of `hubtune queue slots`). Default: a GPU no "
              "run holds where there is a GPU, else the CPU; in the run's train.precision.")
def predict(run_id: int, inputs: tuple[str, ...], as_json: bool, data_file: Path | None,
            column: str | None, out_file: Path | None, batch_size: int, force: bool,
            device: str | None, encoding: str | None = None, runtime: str = "torch",
            quantize: bool = False) -> None:
    """Run a completed run's model on INPUTS (or every row of --file) and print the
    predictions.

    INPUTS are texts; words for token classification; "QUESTION ||| CONTEXT" for
    question answering; a text with the mask token for masked LM; image paths for
    image classification.
    """
    from engine.trained.predict import Predictor, place_for_run

    store = open_store()
    run = store.get_run(run_id)
    if run.status != "completed":
        raise Failure(f"Run {run_id} is {run.status}; only a completed run has a final model.")
    if data_file is not None or out_file is not None:
        if inputs or data_file is None or out_file is None:
            raise Failure("Batch prediction takes --file FILE and --out OUT.csv and no "
                          "INPUTS; give both options, or only INPUTS.")
        _predict_file(run, data_file, column, out_file, batch_size, force, store, device,
                      encoding, runtime=runtime, quantize=quantize)
        return
    if runtime != "torch" or quantize:
        raise Failure("--runtime onnx and --quantize predict whole files: add --file FILE "
                      "--out OUT.csv.")
    if not inputs:
        raise Failure("Give INPUTS to predict on, or --file FILE --out OUT.csv for a whole "
                      "file.")
    placement = place_for_run(store, run.config, device)
    predictions = Predictor(Path(run.output_dir) / "model", placement).predict(list(inputs))
    if as_json:
        echo(dump_json([p.__dict__ for p in predictions]))
        return
    for p in predictions:
        if p.label is None:
            echo(f"{p.score:.4f}\t{printable(p.text)}")
        else:
            echo(f"{printable(p.label)}\t{p.score:.3f}\t{printable(p.text)}")


def _predict_file(run, data_file: Path, column: str | None, out_file: Path, batch_size: int,
                  force: bool, store, device: str | None,
                  encoding: str | None = None, *, runtime: str = "torch",
                  quantize: bool = False) -> None:
    import sys

    from engine.core.config import RunConfig
    from engine.core.outputs import check_new_file, refuse_overwriting_input, write_file
    from engine.trained.predict import place_for_run, predict_file
    from store import data_dir

    check_new_file(out_file, force=force, protected=data_dir())  # before minutes of work
    refuse_overwriting_input(out_file, [(data_file, "the file --file reads")])
    cfg = RunConfig.from_dict(run.config)
    if quantize and runtime != "onnx":
        raise Failure("--quantize is ONNX Runtime's int8 model: add --runtime onnx.")
    model = None
    if runtime == "onnx":
        from engine.trained.onnx_runtime import onnx_model
        from engine.training.inference import CPU

        model, note = onnx_model(Path(run.output_dir), config=run.config,
                                 summary=run.summary or {}, run_name=run.name or "run",
                                 quantize=quantize)
        echo(f"Predicting with {note}", err=True)
        placement = CPU
    else:
        placement = place_for_run(store, cfg, device)
    bars: list = []

    def progress(rows: int, total: int) -> None:
        if not bars:  # the total is known once the file is read
            echo(f"Predicting on {placement.describe()}.", err=True)
            bars.append(click.progressbar(length=total, label="Predicting", file=sys.stderr))
            bars[0].__enter__()
        bars[0].update(rows)

    try:
        result = predict_file(Path(run.output_dir) / "model", cfg, data_file, column=column,
                              batch_size=batch_size, progress=progress, placement=placement,
                              encoding=encoding, model=model)
    finally:
        if bars:
            bars[0].__exit__(None, None, None)
    table = result.table
    sep = "\t" if out_file.suffix.lower() == ".tsv" else ","
    path = write_file(out_file, lambda tmp: table.to_csv(tmp, index=False, sep=sep),
                      force=force, protected=data_dir())
    echo(f"Wrote {len(table):,} predictions to {path}.")
    for note in result.notes:  # how the file was read, when it was a guess
        echo(f"Note: {printable(note)}", err=True)
    if result.metric is not None:
        name, value, labelled = result.metric
        echo(f"{name} {value:.4f} on {labelled:,} labelled rows ({printable(cfg.data.label_column)}).")

