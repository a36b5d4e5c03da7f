"""The `hubtune` command line.

`hubtune` alone opens the TUI; subcommands do the same work headless. torch
and transformers are imported only inside the commands that need them, so
`hubtune --help` and the TUI's first paint stay fast. Errors are one plain
sentence on stderr and a non-zero exit; `--debug` shows the traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from engine.errors import HubtuneError
from store import StoreError
from tui.cli_output import cut, dump_json, echo, os_error_sentence
from tui.safe_text import printable

EXIT_FAILED = 1
EXIT_USAGE = 2


class Failure(click.ClickException):
    """A problem reported as one sentence: `Error: ...`."""

    def show(self, file=None) -> None:
        click.echo(f"Error: {printable(self.message)}", err=True)


def _open_store():
    from store import RunStore

    return RunStore()


class HubtuneGroup(click.Group):
    """Turns hubtune's own errors into plain messages instead of tracebacks."""

    def invoke(self, ctx: click.Context):
        import sqlite3

        try:
            return super().invoke(ctx)
        except (HubtuneError, StoreError, sqlite3.Error, OSError) as exc:
            if ctx.find_root().params.get("debug"):
                raise
            if isinstance(exc, sqlite3.Error):
                message = (f"The run database could not be used ({exc}); check that "
                           "HUBTUNE_HOME is a writable folder that still exists.")
            elif isinstance(exc, OSError):
                message = os_error_sentence(exc)
            else:
                message = str(exc)
            raise Failure(message) from None


@click.group(cls=HubtuneGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="hubtune")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """hubtune: fine-tune Hugging Face hub models from the terminal.

    Run with no command to open the TUI.
    """
    if ctx.invoked_subcommand is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            raise Failure("hubtune opens its TUI only in a terminal (stdin or stdout is not "
                          "one); use a command instead, e.g. `hubtune runs ls` or "
                          "`hubtune train CONFIG` (`hubtune --help` lists them).")
        from tui.app import make_app

        store = _open_store()
        make_app(store=store).run()


# -- train ----------------------------------------------------------------


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value by dotted key, e.g. train.epochs=2.")
@click.option("--detach", is_flag=True, help="Print the run id and return at once.")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel processes (GPUs, or CPU processes over gloo) via torchrun.")
def train(config: Path, overrides: tuple[str, ...], detach: bool, processes: int) -> None:
    """Fine-tune from a YAML CONFIG without the TUI; prints the run id."""
    from engine.config import load_config
    from engine.worker import start_run

    cfg = load_config(config, overrides)
    _check_inputs(cfg)
    store = _open_store()
    run_id = start_run(store, cfg, processes=processes)
    echo(run_id)
    if detach:
        return
    status = _follow(store, run_id)
    if status != "completed":
        run = store.get_run(run_id)
        raise Failure(run.error or f"Run {run_id} ended {status}.")


def _check_inputs(cfg) -> None:
    """Fail before spawning a worker when a named file is plainly missing."""
    from engine.errors import DataError

    for key in ("train", "validation"):
        value = getattr(cfg.data, key)
        if value is None:
            continue
        path = cfg.resolve(value)
        if not path.exists():
            raise DataError(f"The data.{key} file {path} does not exist; check the path.")
    model = cfg.model.id
    if "/" in model and not model.startswith(("torchvision:", "pkg:", "run:")) \
            and not cfg.resolve(model).exists():
        from engine.hub import cache_dir

        cache_dir()  # a hub model: HF_HOME must be usable before a worker starts


def _follow(store, run_id: int, *, after_event: int = 0) -> str:
    """Print events (those after `after_event`) and progress until the run ends;
    Ctrl-C detaches. A resumed run is followed from its resume on, so an earlier
    attempt's events and outcome are never printed as this one's."""
    last_event = after_event
    last_step = -1
    resumed = after_event > 0
    import sqlite3

    db_inode = store.path.stat().st_ino

    def database_gone() -> bool:
        try:
            return store.path.stat().st_ino != db_inode
        except OSError:
            return True

    gone = Failure(f"The run database {store.path} was removed or replaced while following "
                   f"run {run_id}; check HUBTUNE_HOME.")
    try:
        while True:
            if database_gone():
                raise gone
            try:
                run = store.get_run(run_id)
            except (sqlite3.Error, StoreError):
                if database_gone():  # removed between the check and the read
                    raise gone from None
                raise
            for ev in store.events(run_id, after_id=last_event):
                last_event = ev.id
                echo(f"[{ev.level}] {printable(ev.message)}", err=ev.level == "error")
            latest = store.latest_metrics(run_id)
            step = int(_latest_step(store, run_id))
            if step > last_step and "loss" in latest:
                last_step = step
                echo(_progress_line(step, latest))
            if run.status in ("completed", "failed", "stopped", "interrupted"):
                if not resumed or run.status == "completed":
                    _print_summary(run)
                return run.status
            if run.status == "running":
                store.reap_interrupted()
            time.sleep(0.5)
    except KeyboardInterrupt:
        echo(f"\nDetached; run {run_id} goes on. `hubtune runs follow {run_id}` "
                   f"reattaches, `hubtune runs stop {run_id}` stops it.", err=True)
        sys.exit(0)


def _latest_step(store, run_id: int) -> int:
    row = store.db.execute(
        "SELECT max(step) FROM metrics WHERE run_id = ? AND name = 'loss'", [run_id]
    ).fetchone()
    return row[0] if row and row[0] is not None else -1


def _progress_line(step: int, m: dict[str, float]) -> str:
    total = int(m.get("total_steps", 0))
    parts = [f"step {step}/{total}" if total else f"step {step}",
             f"loss {m['loss']:.4f}"]
    if "lr" in m:
        parts.append(f"lr {m['lr']:.2e}")
    if "samples_per_s" in m:
        parts.append(f"{m['samples_per_s']:.1f} samples/s")
    if "val_accuracy" in m:
        parts.append(f"val acc {m['val_accuracy']:.4f}")
    return "  ".join(parts)


def _print_summary(run) -> None:
    s = run.summary
    if not s:
        return
    keys = [("final_accuracy", "accuracy"), ("final_macro_f1", "macro-F1"),
            ("baseline_majority_accuracy", "majority-class accuracy"),
            ("baseline_majority_macro_f1", "majority-class macro-F1")]
    shown = [f"{label} {s[k]:.4f}" for k, label in keys if isinstance(s.get(k), (int, float))]
    if shown:
        echo(f"Run {run.id} {run.status}: " + ", ".join(shown))


# -- runs -----------------------------------------------------------------


@cli.group()
def runs() -> None:
    """List, inspect, compare and manage recorded runs."""


@runs.command("ls")
@click.option("--status", type=click.Choice(
    ["queued", "running", "completed", "failed", "stopped", "interrupted"]))
@click.option("--search", metavar="Q", help="Match name, model, task, dataset, tags or notes.")
@click.option("--sort", default="-created", show_default=True,
              help="created, started, finished, name, status, model, task or id; - for descending.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def runs_ls(status, search, sort, limit, as_json) -> None:
    """List runs, newest first."""
    store = _open_store()
    store.reap_interrupted()
    rows = store.list_runs(status=status, search=search, sort=sort, limit=limit)
    if as_json:
        echo(dump_json([_run_brief(r) for r in rows]))
        return
    if not rows:
        echo("No runs yet. Start one with `hubtune train CONFIG`.")
        return
    header = f"{'ID':>4}  {'STATUS':<11} {'NAME':<24} {'MODEL':<28} {'TASK':<20} {'ACC':>6}  STARTED"
    echo(header)
    for r in rows:
        acc = r.summary.get("final_accuracy")
        echo(
            f"{r.id:>4}  {r.status:<11} {cut(r.name, 24):<24} {cut(r.model_id or '', 28):<28} "
            f"{cut(r.task or '', 20):<20} {f'{acc:.3f}' if acc is not None else '-':>6}  "
            f"{(r.started_utc or r.created_utc)[:19].replace('T', ' ')}"
        )


def _run_brief(r) -> dict:
    return {
        "id": r.id, "name": r.name, "status": r.status, "model_id": r.model_id,
        "task": r.task, "dataset": r.dataset, "created_utc": r.created_utc,
        "started_utc": r.started_utc, "finished_utc": r.finished_utc,
        "duration_s": r.duration_s, "tags": list(r.tags), "summary": r.summary,
        "parent_id": r.parent_id, "error": r.error,
    }


@runs.command("show")
@click.argument("run_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def runs_show(run_id: int, as_json: bool) -> None:
    """Show one run: config, outcome, metrics and recent events."""
    store = _open_store()
    store.reap_interrupted()
    run = store.get_run(run_id)
    if as_json:
        out = run.to_json()
        out["metrics"] = store.metric_names(run_id)
        echo(dump_json(out))
        return
    echo(f"Run {run.id}  {printable(run.name)}  [{run.status}]")
    echo(f"  model    {printable(run.model_id)}\n  task     {run.task or '-'}\n"
         f"  dataset  {printable(run.dataset)}")
    if run.tags:
        echo(f"  tags     {printable(', '.join(run.tags))}")
    if run.notes:
        note = printable(run.notes, multiline=True).replace("\n", "\n           ")
        echo(f"  notes    {note}")
    echo(f"  created  {run.created_utc}\n  started  {run.started_utc or '-'}"
               f"\n  finished {run.finished_utc or '-'}")
    if run.error:
        echo(f"  error    {printable(run.error)}")
    for key, value in sorted(run.summary.items()):
        if isinstance(value, float):
            echo(f"  {key:<32} {value:.4f}")
    for ev in store.events(run_id)[-10:]:
        echo(f"  [{ev.level}] {printable(ev.message)}")


@runs.command("compare")
@click.argument("run_ids", type=int, nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def runs_compare(run_ids: tuple[int, ...], as_json: bool) -> None:
    """Compare two or more runs: differing config keys and final metrics."""
    store = _open_store()
    cmp = store.compare(list(run_ids))
    if as_json:
        echo(dump_json({
            "runs": [r.id for r in cmp.runs],
            "config_diff": {k: list(v) for k, v in cmp.config_diff.items()},
            "metrics": {k: list(v) for k, v in cmp.metrics.items()},
        }))
        return
    width = max([len(k) for k in (*cmp.config_diff, *cmp.metrics)] + [6])
    echo(f"{'':<{width}}  " + "  ".join(f"{'run ' + str(r.id):>14}" for r in cmp.runs))
    for key, values in cmp.config_diff.items():
        echo(f"{key:<{width}}  " + "  ".join(f"{_fmt(v):>14}" for v in values))
    for key, values in cmp.metrics.items():
        if all(v is None or isinstance(v, (int, float)) for v in values):
            echo(f"{key:<{width}}  " + "  ".join(f"{_fmt(v):>14}" for v in values))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else printable(v, limit=60)


@runs.command("stop")
@click.argument("run_id", type=int)
def runs_stop(run_id: int) -> None:
    """Ask a running run to stop after its current step."""
    store = _open_store()
    run = store.get_run(run_id)
    if run.status not in ("queued", "running"):
        raise Failure(f"Run {run_id} is {run.status}, not running.")
    store.request_stop(run_id)
    echo(f"Asked run {run_id} to stop.")


@runs.command("follow")
@click.argument("run_id", type=int)
def runs_follow(run_id: int) -> None:
    """Print a run's events and progress until it ends (Ctrl-C detaches again).

    Reattaches to a run started with --detach, from the TUI, or on a dropped
    SSH session; for a finished run it prints its events and outcome.
    """
    store = _open_store()
    store.get_run(run_id)  # an unknown id is one clear sentence, not a wait
    status = _follow(store, run_id)
    if status != "completed":
        raise Failure(store.get_run(run_id).error or f"Run {run_id} ended {status}.")


@runs.command("resume")
@click.argument("run_id", type=int)
@click.option("--detach", is_flag=True, help="Return at once instead of following progress.")
@click.option("--checkpoint", metavar="step-N",
              help="Resume from this checkpoint instead of the newest intact one.")
def runs_resume(run_id: int, detach: bool, checkpoint: str | None) -> None:
    """Continue a stopped, interrupted or failed run from its newest intact checkpoint."""
    from engine.worker import resume_run

    store = _open_store()
    if checkpoint is not None and not checkpoint.startswith("step-"):
        checkpoint = f"step-{checkpoint}" if checkpoint.isdigit() else checkpoint
    before = store.events(run_id)  # what the earlier attempt said is not this one's outcome
    point = resume_run(store, run_id, checkpoint)
    for note in point.notes():
        echo(note, err=True)
    echo(f"Resuming run {run_id} from {point.path.name}.")
    if detach:
        return
    status = _follow(store, run_id, after_event=before[-1].id if before else 0)
    if status != "completed":
        raise Failure(store.get_run(run_id).error or f"Run {run_id} ended {status}.")


@runs.command("fork")
@click.argument("run_id", type=int)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change a setting of the copy, e.g. train.learning_rate=1e-4.")
@click.option("--detach", is_flag=True, help="Print the new run id and return at once.")
def runs_fork(run_id: int, overrides: tuple[str, ...], detach: bool) -> None:
    """Start a new run from RUN_ID's config with changes; the parent is recorded."""
    from engine.config import RunConfig, apply_overrides
    from engine.worker import start_run

    store = _open_store()
    parent = store.get_run(run_id)
    cfg = RunConfig.from_dict(apply_overrides(parent.config, overrides))
    if cfg.name == parent.name:
        import dataclasses

        cfg = dataclasses.replace(cfg, name=f"{parent.name}-fork")
    _check_inputs(cfg)
    new_id = start_run(store, cfg, parent_id=run_id, tags=parent.tags)
    echo(new_id)
    if detach:
        return
    status = _follow(store, new_id)
    if status != "completed":
        raise Failure(store.get_run(new_id).error or f"Run {new_id} ended {status}.")


@runs.command("rm")
@click.argument("run_ids", type=int, nargs=-1, required=True)
def runs_rm(run_ids: tuple[int, ...]) -> None:
    """Delete runs with their metrics, events and files."""
    store = _open_store()
    for run_id in run_ids:
        store.delete_run(run_id)
        echo(f"Deleted run {run_id}.")


@runs.command("tag")
@click.argument("run_id", type=int)
@click.argument("tags", nargs=-1)
def runs_tag(run_id: int, tags: tuple[str, ...]) -> None:
    """Set a run's tags (none clears them)."""
    store = _open_store()
    store.get_run(run_id)
    store.set_tags(run_id, list(tags))
    echo(f"Run {run_id} tags: {', '.join(tags) or '(none)'}.")


@runs.command("note")
@click.argument("run_id", type=int)
@click.argument("text")
def runs_note(run_id: int, text: str) -> None:
    """Set a run's note (searchable, shown in the TUI)."""
    store = _open_store()
    store.get_run(run_id)
    store.set_notes(run_id, text)
    echo(f"Run {run_id} note saved.")


@runs.command("export")
@click.argument("run_id", type=int)
@click.option("--metrics", "metrics_file", required=True,
              type=click.Path(dir_okay=True, path_type=Path),
              help="CSV file to write every metric point to.")
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
def runs_export(run_id: int, metrics_file: Path, force: bool) -> None:
    """Write a run's metric series to CSV (step, epoch, name, value, time)."""
    import csv

    from engine.outputs import write_file
    from store import data_dir

    store = _open_store()
    store.get_run(run_id)
    rows = store.db.execute(
        "SELECT step, epoch, name, value, time_unix FROM metrics WHERE run_id = ?"
        " ORDER BY name, step", [run_id]).fetchall()

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["step", "epoch", "name", "value", "time_unix"])
            writer.writerows(rows)

    path = write_file(metrics_file, write, force=force, protected=data_dir())
    echo(f"Wrote {len(rows)} rows to {path}.")


@cli.command("export")
@click.argument("run_id", type=int)
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--push", "repo", metavar="REPO", help="Also upload the folder to this hub repo.")
@click.option("--public", is_flag=True, help="Make a pushed repo public (default private).")
@click.option("--force", is_flag=True,
              help="Write into a non-empty TARGET, replacing files of the same names.")
def export(run_id: int, target: Path, repo: str | None, public: bool, force: bool) -> None:
    """Write a completed run's model to TARGET with a model card (and optionally push it)."""
    from engine.export import export_model, push_folder
    from store import data_dir

    store = _open_store()
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


@cli.command()
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

    store = _open_store()
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


from tui.cli_data import data  # noqa: E402
from tui.cli_hub import cache, hub  # noqa: E402 - registered after the core commands
from tui.cli_plan import plan  # noqa: E402

cli.add_command(hub)
cli.add_command(cache)
cli.add_command(plan)
cli.add_command(data)


def main() -> None:
    cli(prog_name="hubtune")


if __name__ == "__main__":
    main()
