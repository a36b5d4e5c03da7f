"""`hubtune runs ...`: list, inspect, compare, stop, resume, fork, delete, tag, note and
export recorded runs."""

from __future__ import annotations

from pathlib import Path

import click

from store import StoreError
from tui.cli.base import RUN_ID, Failure, open_store
from tui.cli.comparison import cell_value, echo_comparison
from tui.cli.output import cut, dump_json, echo
from tui.cli.train import check_inputs, detached_note, follow
from tui.formatting import metric, started
from tui.safe_text import printable


@click.group()
def runs() -> None:
    """List, inspect, compare and manage recorded runs."""


@runs.command("ls")
@click.option("--status", type=click.Choice(
    ["queued", "running", "completed", "failed", "stopped", "interrupted", "pruned"]))
@click.option("--search", metavar="Q", help="Match name, model, task, dataset, tags or notes.")
@click.option("--sort", default="-created", show_default=True,
              help="created, started, finished, name, status, model, task or id; - for descending.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--sweep", metavar="ID", help="Only the runs of this sweep.")
@click.option("--remote", metavar="NAME|all",
              help="The runs of a remote (`hubtune remote ls`), or with `all` this machine's "
                   "and every remote's; each carries `remote` in --json.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def runs_ls(status, search, sort, limit, sweep, remote, as_json) -> None:
    """List runs, newest first."""
    store = open_store()
    _reap(store)
    from tui.run_result import live_results, run_result

    rows = store.list_runs(status=status, search=search, sort=sort, limit=limit, sweep=sweep)
    results = {r.id: run_result(r) for r in live_results(store, rows)}
    if remote is not None:
        from tui.cli.remote import echo_runs_everywhere

        local = [_run_brief(r, results[r.id]) for r in rows] if remote == "all" else []
        options = [*(["--status", status] if status else []),
                   *(["--search", search] if search else []), "--sort", sort,
                   "--limit", str(limit), *(["--sweep", sweep] if sweep else [])]
        echo_runs_everywhere(remote, local, options, as_json)
        return
    if as_json:
        echo(dump_json([_run_brief(r, results[r.id]) for r in rows]))
        return
    if not rows:
        echo("No runs yet. Start one with `hubtune train CONFIG`.")
        return
    # RESULT: the main metric of the model the run keeps (its best evaluation's with
    # train.restore_best, else its last), as the TUI's Result column shows it.
    header = (f"{'ID':>4}  {'STATUS':<11} {'NAME':<24} {'MODEL':<28} {'TASK':<20} "
              f"{'RESULT':>12}  STARTED")
    echo(header)
    for r in rows:
        res = results[r.id]
        shown = f"{res.short} {metric(res.value)}" if res.value is not None else "-"
        echo(
            f"{r.id:>4}  {r.status:<11} {cut(r.name, 24):<24} {cut(r.model_id or '', 28):<28} "
            f"{cut(r.task or '', 20):<20} {cut(shown, 12):>12}  "
            f"{started(r, seconds=True)}"
        )


def _reap(store) -> None:
    """Mark runs whose worker process died interrupted; their slots go to the queue at once."""
    if store.reap_interrupted():
        from engine.launch.start import start_queued

        start_queued(store)


def _run_brief(r, result) -> dict:
    """A run for `runs ls --json`; `result` is its tui.run_result.RunResult."""
    return {
        "id": r.id, "name": r.name, "status": r.status, "model_id": r.model_id,
        "task": r.task, "dataset": r.dataset, "created_utc": r.created_utc,
        "started_utc": r.started_utc, "finished_utc": r.finished_utc,
        "duration_s": r.duration_s, "tags": list(r.tags), "summary": r.summary,
        "parent_id": r.parent_id, "error": r.error, "sweep_id": r.sweep_id,
        "result": result.to_json(),
    }


@runs.command("show")
@click.argument("run_id", type=RUN_ID)
@click.option("--remote", metavar="NAME", help="A run of this remote (`hubtune remote ls`).")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def runs_show(run_id: int, remote: str | None, as_json: bool) -> None:
    """Show one run: config, outcome, metrics and recent events."""
    if remote is not None:
        from tui.cli.remote import echo_remote

        return echo_remote(remote, ["runs", "show", str(run_id),
                                    *(["--json"] if as_json else [])])
    from engine.runs.lineage import config_diff, parents
    from tui.cli.review import class_report_json, echo_class_report
    from tui.run_result import live_results, run_result

    store = open_store()
    _reap(store)
    run = store.get_run(run_id)
    result = run_result(live_results(store, [run])[0])
    lineage = []
    for parent in parents(run.parent_id, run.config):
        try:
            record = store.get_run(parent.run_id)
        except StoreError:
            record = None  # deleted since
        changes = config_diff(record.config, run.config) if record and \
            parent.kind == "fork" else []
        lineage.append((parent, record, changes))
    if as_json:
        out = run.to_json()
        out["metrics"] = store.metric_names(run_id)
        # processes over all machines, and machines (env of runs from before: one each)
        out["world_size"] = (run.env or {}).get("world_size", 1)
        out["nnodes"] = (run.env or {}).get("nnodes", 1)
        out["classes"] = class_report_json(run.summary)
        out["result"] = result.to_json()
        out["parents"] = [{"id": p.run_id, "kind": p.kind, "name": r.name if r else None,
                           "config_diff": [c.to_json() for c in changes]}
                          for p, r, changes in lineage]
        echo(dump_json(out))
        return
    echo(f"Run {run.id}  {printable(run.name)}  [{run.status}]")
    echo(f"  model    {printable(run.model_id)}\n  task     {run.task or '-'}\n"
         f"  dataset  {printable(run.dataset)}")
    _echo_lineage(lineage)
    if run.sweep_id:
        echo(f"  sweep    {printable(run.sweep_id)}")
    if run.devices:
        echo(f"  slots    {', '.join(run.devices)}")
    if (run.env or {}).get("nnodes", 1) > 1:
        hosts = ", ".join(printable(str(h)) for h in run.env.get("node_hosts") or [])
        echo(f"  nodes    {run.env['nnodes']} ({hosts or '-'}), "
             f"{run.env.get('world_size', '?')} processes")
    if run.tags:
        echo(f"  tags     {printable(', '.join(run.tags))}")
    if run.notes:
        note = printable(run.notes, multiline=True).replace("\n", "\n           ")
        echo(f"  notes    {note}")
    echo(f"  created  {run.created_utc}\n  started  {run.started_utc or '-'}"
               f"\n  finished {run.finished_utc or '-'}")
    echo(f"  output   {printable(run.output_dir or '-')}")
    if run.error:
        echo(f"  error    {printable(run.error)}")
    _echo_result(result)
    for key, value in sorted(run.summary.items()):
        if isinstance(value, float):
            echo(f"  {key:<32} {metric(value, key)}")
    echo_class_report(run.summary)
    _echo_config(run.config)
    for ev in store.events(run_id)[-10:]:
        echo(f"  [{ev.level}] {printable(ev.message)}")


def _echo_result(result) -> None:
    """The run's result (the model it keeps) and, apart, its last evaluation."""
    if result.value is None:
        return
    at = f", step {result.step}" if result.step is not None else ""
    echo(f"  result   {printable(result.metric)} {metric(result.value)} (the kept model: "
         f"{result.label}{at})")
    if result.kept == "best" and result.last is not None:
        echo(f"  last evaluation  {printable(result.metric)} {metric(result.last)}")


def _echo_lineage(lineage: list) -> None:
    """The runs this one comes from, and for a fork the settings it changed."""
    from engine.runs.lineage import show_value

    for parent, record, changes in lineage:
        what = "fork of" if parent.kind == "fork" else "continues from the model of"
        name = f" {printable(record.name)}" if record else " (deleted since)"
        echo(f"  parent   {what} run {parent.run_id}{name}")
        for c in changes:
            echo(f"           {printable(c.key)}: {cut(show_value(c.old), 60)} -> "
                 f"{cut(show_value(c.new), 60)}")


def _echo_config(config: dict) -> None:
    """The whole config, one dotted key a line (as --set takes them)."""
    from engine.runs.lineage import flatten, show_value

    echo("  config")
    for key, value in flatten(config).items():
        if key != "base_dir":
            echo(f"    {printable(key)}: {cut(show_value(value), 200)}")


@runs.command("compare")
@click.argument("run_refs", metavar="[ID | NAME:ID]...", nargs=-1)
@click.option("--sweep", "sweep_id", metavar="ID",
              help="Rank the runs of a sweep by their main metric instead.")
@click.option("--examples", is_flag=True,
              help="Show the validation examples two runs on the same data predict "
                   "differently, and which run is right.")
@click.option("--remote", metavar="NAME",
              help="Plain IDs (and --sweep) are this remote's runs (`hubtune remote ls`); "
                   "local:ID is still this machine's.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def runs_compare(run_refs: tuple[str, ...], sweep_id: str | None, examples: bool,
                 remote: str | None, as_json: bool) -> None:
    """Compare two or more runs: differing config keys and final metrics.

    Runs of other machines mix in as NAME:ID (remote NAME's run ID), or with --remote
    NAME for plain IDs; --json then adds `remotes`, each run's remote (null: this
    machine)."""
    from tui.cli.remote_steer import compare_everywhere, compare_sweep_there, parse_refs

    refs = parse_refs(run_refs, remote)
    if sweep_id is not None and refs:
        raise Failure("Give either run ids or --sweep ID, not both.")
    if sweep_id is not None and remote is not None:
        return compare_sweep_there(remote, sweep_id, as_json)
    if compare_everywhere(refs, examples=examples, as_json=as_json):
        return
    run_ids = tuple(i for _, i in refs)
    if examples:
        from tui.cli.review import compare_examples

        compare_examples(run_ids, as_json, limit=None if as_json else 50)
        return
    store = open_store()
    if sweep_id is not None:
        _compare_sweep(store, sweep_id, as_json)
        return
    if not run_ids:
        raise Failure("Compare needs two or more run ids, or --sweep ID.")
    from tui.run_result import live_results, run_result

    cmp = store.compare(list(run_ids))
    results = [run_result(r) for r in live_results(store, list(cmp.runs))]
    echo_comparison(cmp, results, [f"run {r.id}" for r in cmp.runs], as_json)


def _compare_sweep(store, sweep_id: str, as_json: bool) -> None:
    """A sweep's runs best first, with the settings that differ between them."""
    from engine.runs.sweep import rank_sweep

    _reap(store)
    members = store.list_runs(sweep=sweep_id, sort="id", limit=None)
    if not members:
        raise Failure(f"There is no sweep {sweep_id!r}; `hubtune runs ls --json` shows each "
                      "run's sweep_id.")
    totals = {r.id: store.latest_metrics(r.id).get("total_steps") for r in members}
    ranked = rank_sweep(members, totals)
    diff = store.compare([r.id for r in members]).config_diff if len(members) > 1 else {}
    keys = [k for k in diff if k != "name"]
    importance = _search_importances(sweep_id)
    if as_json:
        echo(dump_json({"sweep_id": sweep_id, "metric": ranked[0].metric, "points": [
            {"rank": p.rank, "id": p.run.id, "name": p.run.name, "status": p.state,
             "pruned_at": p.run.summary.get("pruned_at") if p.run.summary else None,
             "value": p.value, "config": {k: diff[k][members.index(p.run)] for k in keys}}
            for p in ranked], **({"importances": importance} if importance is not None
                                 else {})}))
        return
    watched = ranked[0].metric or "metric"
    echo(f"Sweep {printable(sweep_id)}: {len(members)} runs ranked by {printable(watched)}")
    echo(f"{'RANK':>4}  {'ID':>4}  {'STATUS':<13} {cut(watched, 12):>12}  " + "  ".join(keys))
    for p in ranked:
        values = "  ".join(cell_value(diff[k][members.index(p.run)]) for k in keys)
        pruned = (p.run.summary or {}).get("pruned_at")
        state = f"pruned@{pruned}" if p.state == "pruned" and pruned is not None else p.state
        echo(f"{p.rank or '-':>4}  {p.run.id:>4}  {state:<13} {metric(p.value):>12}  {values}")
    if importance:
        echo("Importance: " + ", ".join(f"{printable(k)} {v:.2f}" for k, v in
                                        sorted(importance.items(), key=lambda kv: -kv[1])))
    elif importance is not None:
        echo("Importance: shown once a few trials have completed.")


def _search_importances(sweep_id: str) -> dict[str, float] | None:
    """A Bayesian search's parameter importances ({} until enough trials completed);
    None for a grid or random sweep."""
    from engine.runs.search import importances, load_spec

    spec = load_spec(sweep_id)
    return None if spec is None else importances(spec)


@runs.command("stop")
@click.argument("run_id", type=RUN_ID)
@click.option("--remote", metavar="NAME", help="A run of this remote (`hubtune remote ls`).")
def runs_stop(run_id: int, remote: str | None) -> None:
    """Ask a running run to stop after its current step; a queued one leaves the queue."""
    if remote is not None:
        from tui.cli.remote import echo_remote

        return echo_remote(remote, ["runs", "stop", str(run_id)])
    from engine.runs.lifecycle import stop_run

    store = open_store()
    echo(stop_run(store, store.get_run(run_id)))


@runs.command("follow")
@click.argument("run_id", type=RUN_ID)
@click.option("--remote", metavar="NAME", help="A run of this remote (`hubtune remote ls`).")
def runs_follow(run_id: int, remote: str | None) -> None:
    """Print a run's events and progress until it ends (Ctrl-C detaches again).

    Reattaches to a run started with --detach, from the TUI, or on a dropped
    SSH session; for a finished run it prints its events and outcome.
    """
    if remote is not None:
        from tui.cli.remote import follow_remote

        return follow_remote(remote, ["runs", "follow", str(run_id)])
    store = open_store()
    store.get_run(run_id)  # an unknown id is one clear sentence, not a wait
    status = follow(store, run_id)
    if status != "completed":
        raise Failure(store.get_run(run_id).error or f"Run {run_id} ended {status}.")


@runs.command("resume")
@click.argument("run_id", type=RUN_ID)
@click.option("--detach", is_flag=True, help="Return at once instead of following progress.")
@click.option("--checkpoint", metavar="step-N",
              help="Resume from this checkpoint instead of the newest intact one.")
@click.option("--remote", metavar="NAME", help="A run of this remote (`hubtune remote ls`).")
def runs_resume(run_id: int, detach: bool, checkpoint: str | None, remote: str | None) -> None:
    """Continue a stopped, interrupted or failed run from its newest intact checkpoint."""
    from engine.launch.resume import resume_run

    if checkpoint is not None and not checkpoint.startswith("step-"):
        checkpoint = f"step-{checkpoint}" if checkpoint.isdigit() else checkpoint
    if remote is not None:
        from tui.cli.remote_steer import resume_remote

        return resume_remote(remote, run_id, detach=detach, checkpoint=checkpoint)
    store = open_store()
    before = store.events(run_id)  # what the earlier attempt said is not this one's outcome
    point = resume_run(store, run_id, checkpoint)
    for note in point.notes():
        echo(note, err=True)
    _remind_nodes(store.get_run(run_id))
    echo(f"Resuming run {run_id} from {point.path.name}.")
    if detach:
        echo(detached_note(store.get_run(run_id)), err=True)
        return
    status = follow(store, run_id, after_event=before[-1].id if before else 0)
    if status != "completed":
        raise Failure(store.get_run(run_id).error or f"Run {run_id} ended {status}.")


def _remind_nodes(run) -> None:
    """A multi-node run resumes on as many machines, meeting where they met before."""
    from engine.launch.start import launch_nodes

    nodes = launch_nodes(run.id)
    if nodes:
        echo(f"Run {run.id} trains on {nodes['nnodes']} machines: start its `hubtune train "
             f"... --nnodes {nodes['nnodes']} --node-rank R --rdzv-endpoint "
             f"{nodes['endpoint']}` again on nodes 1 to {nodes['nnodes'] - 1}; they read "
             f"{run.output_dir}/checkpoints, so it must be on a file system they share.",
             err=True)


@runs.command("fork")
@click.argument("run_id", type=RUN_ID)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change a setting of the copy, e.g. train.learning_rate=1e-4.")
@click.option("--detach", is_flag=True, help="Print the new run id and return at once.")
def runs_fork(run_id: int, overrides: tuple[str, ...], detach: bool) -> None:
    """Start a new run from RUN_ID's config with changes; the parent is recorded."""
    from engine.launch.start import start_run
    from engine.runs.lifecycle import fork_config

    store = open_store()
    parent = store.get_run(run_id)
    cfg = fork_config(parent, overrides)
    check_inputs(cfg)
    new_id = start_run(store, cfg, parent_id=run_id, tags=parent.tags)
    echo(new_id)
    if detach:
        echo(detached_note(store.get_run(new_id)), err=True)
        return
    status = follow(store, new_id)
    if status != "completed":
        raise Failure(store.get_run(new_id).error or f"Run {new_id} ended {status}.")


@runs.command("rm")
@click.argument("run_ids", type=RUN_ID, nargs=-1, required=True)
def runs_rm(run_ids: tuple[int, ...]) -> None:
    """Delete runs with their metrics, events and files."""
    from engine.launch.start import start_queued

    store = open_store()
    for run_id in run_ids:
        store.delete_run(run_id)
        echo(f"Deleted run {run_id}.")
        start_queued(store)  # a run deleted once it had its slots gives them to the next


@runs.command("tag")
@click.argument("run_id", type=RUN_ID)
@click.argument("tags", nargs=-1)
def runs_tag(run_id: int, tags: tuple[str, ...]) -> None:
    """Set a run's tags (none clears them)."""
    store = open_store()
    store.get_run(run_id)
    store.set_tags(run_id, list(tags))
    echo(f"Run {run_id} tags: {', '.join(tags) or '(none)'}.")


@runs.command("note")
@click.argument("run_id", type=RUN_ID)
@click.argument("text")
def runs_note(run_id: int, text: str) -> None:
    """Set a run's note (searchable, shown in the TUI)."""
    store = open_store()
    store.get_run(run_id)
    store.set_notes(run_id, text)
    echo(f"Run {run_id} note saved.")


@runs.command("export", short_help="Export runs' metrics and history; not the model.")
@click.argument("run_ids", type=RUN_ID, nargs=-1)
@click.option("--metrics", "metrics_file", type=click.Path(dir_okay=True, path_type=Path),
              help="CSV file to write every metric point of one run to (- prints it).")
# Names checked by the engine (engine.core.config.TRACKERS), which --help need not import.
@click.option("--to", "target", type=(str, click.Path(path_type=Path)),
              metavar="TRACKER DIR",
              help="Write each run's history to a tracker's offline format under DIR: "
                   "tensorboard (event files), mlflow (a file store), trackio (its local "
                   "store) or wandb (an offline run for `wandb sync`).")
@click.option("--sweep", "sweep_id", metavar="ID", help="Export every run of this sweep.")
@click.option("--force", is_flag=True, help="Replace the CSV file if it exists.")
@click.option("--remote", metavar="NAME",
              help="With --metrics: a run of this remote (`hubtune remote ls`); the CSV is "
                   "written here.")
def runs_export(run_ids: tuple[int, ...], metrics_file: Path | None,
                target: tuple[str, Path] | None, sweep_id: str | None, force: bool,
                remote: str | None) -> None:
    """Export runs' metrics and history, not their model (`hubtune export` writes that).

    --metrics FILE.csv writes one run's metric series (step, epoch, name, value, time);
    --to TRACKER DIR writes runs' whole history (metrics, config, tags, notes, events,
    lineage, environment) for TensorBoard, MLflow, trackio or W&B. Exporting again
    replaces, never duplicates."""
    if (metrics_file is None) == (target is None):
        raise Failure("Give either --metrics FILE.csv or --to TRACKER DIR.")
    if remote is not None:
        if metrics_file is None or sweep_id is not None or len(run_ids) != 1:
            raise Failure("With --remote, export one run's --metrics FILE.csv (for --to, "
                          "export on that machine).")
        from tui.cli.remote_steer import export_metrics_remote

        return export_metrics_remote(remote, run_ids[0], metrics_file, force)
    store = open_store()
    if sweep_id is not None:
        if run_ids:
            raise Failure("Give either run ids or --sweep ID, not both.")
        run_ids = tuple(r.id for r in store.list_runs(sweep=sweep_id, sort="id", limit=None))
        if not run_ids:
            raise Failure(f"There is no sweep {sweep_id!r}; `hubtune runs ls --json` shows "
                          "each run's sweep_id.")
    if not run_ids:
        raise Failure("Name the runs to export (hubtune runs export ID...), or --sweep ID.")
    for run_id in run_ids:
        store.get_run(run_id)  # every id names a run before anything is written
    if target is not None:
        _export_to(store, run_ids, *target)
        return
    if len(run_ids) > 1:
        raise Failure("--metrics writes one run's CSV; export one run at a time, or use "
                      "--to TRACKER DIR for several.")
    _export_csv(store, run_ids[0], metrics_file, force)


def _export_to(store, run_ids: tuple[int, ...], tracker: str, folder: Path) -> None:
    from engine.share.export import export_runs

    def done(run_id: int, points: int) -> None:
        echo(f"Run {run_id}: {points} points to {tracker}.")

    export_runs(store, run_ids, tracker, folder, done=done)
    echo(f"Wrote {len(run_ids)} run{'s' if len(run_ids) > 1 else ''} to {tracker} in "
         f"{printable(str(folder))}.")


def _export_csv(store, run_id: int, metrics_file: Path, force: bool) -> None:
    import csv

    from engine.core.outputs import write_file
    from store import data_dir

    rows = store.metric_rows(run_id)
    if str(metrics_file) == "-":  # to stdout (what a remote's `--remote` export reads)
        import io

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["step", "epoch", "name", "value", "time_unix"])
        writer.writerows(rows)
        echo(out.getvalue().rstrip("\n"))
        return

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["step", "epoch", "name", "value", "time_unix"])
            writer.writerows(rows)

    path = write_file(metrics_file, write, force=force, protected=data_dir())
    echo(f"Wrote {len(rows)} rows to {path}.")
