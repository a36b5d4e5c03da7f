"""`hubtune runs metrics` and `runs events`: a run's metric series as points and its
event log, the newer ones only when asked (`--after-step`, `--after`). Read-only, so
another machine may ask for them over SSH (the runs screen follows a remote run's
curves and events with them, tui/remote_detail.py).

Imports neither textual nor torch (the CLI contract).
"""

from __future__ import annotations

import click

from tui.cli.base import RUN_ID, open_store
from tui.cli.output import dump_json, echo
from tui.formatting import metric
from tui.safe_text import printable


@click.command("metrics")
@click.argument("run_id", type=RUN_ID)
@click.option("--name", "names", multiple=True, metavar="NAME",
              help="Only this metric (repeatable), e.g. loss or val_accuracy; default all.")
@click.option("--after-step", type=click.IntRange(min=-1), default=-1, show_default=True,
              help="Only the points after this step (a follower asks for what is new).")
@click.option("--json", "as_json", is_flag=True, help="Print the series as JSON.")
def runs_metrics(run_id: int, names: tuple[str, ...], after_step: int, as_json: bool) -> None:
    """A run's metric series (the curves) and each metric's latest value.

    --json prints {"run", "status", "started_utc", "latest": {NAME: VALUE},
    "series": {NAME: {"steps": [...], "values": [...]}}}."""
    store = open_store()
    run = store.get_run(run_id)
    wanted = list(dict.fromkeys(names)) or store.metric_names(run_id)
    series = {name: store.series(run_id, name, after_step=after_step) for name in wanted}
    latest = store.latest_metrics(run_id)
    if as_json:
        echo(dump_json({
            "run": run_id, "status": run.status, "started_utc": run.started_utc,
            "latest": latest,
            "series": {name: {"steps": list(s.steps), "values": list(s.values)}
                       for name, s in series.items()}}))
        return
    if not any(len(s) for s in series.values()):
        echo(f"Run {run_id} has no metric points" + (f" after step {after_step}."
                                                     if after_step >= 0 else " yet."))
        return
    echo(f"{'NAME':<32} {'POINTS':>7} {'LAST STEP':>9}  LAST VALUE")
    for name, s in series.items():
        if len(s):
            echo(f"{printable(name, limit=32):<32} {len(s):>7} {s.steps[-1]:>9}  "
                 f"{metric(s.values[-1], name)}")


@click.command("events")
@click.argument("run_id", type=RUN_ID)
@click.option("--after", "after_id", type=click.IntRange(min=0), default=0, show_default=True,
              help="Only the events after this event id (a follower asks for what is new).")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=500, show_default=True,
              help="At most this many events, the oldest first.")
@click.option("--json", "as_json", is_flag=True, help="Print the events as JSON.")
def runs_events(run_id: int, after_id: int, limit: int, as_json: bool) -> None:
    """A run's event log (what the run panel lists), oldest first.

    --json prints {"run", "events": [{"id", "time_unix", "level", "message"}]}."""
    store = open_store()
    store.get_run(run_id)  # an unknown run is its own sentence
    events = store.events(run_id, after_id=after_id, limit=limit)
    if as_json:
        echo(dump_json({"run": run_id, "events": [
            {"id": e.id, "time_unix": e.time_unix, "level": e.level, "message": e.message}
            for e in events]}))
        return
    for e in events:
        echo(f"{e.id:>6} [{e.level}] {printable(e.message)}")
