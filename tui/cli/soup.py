"""`hubtune runs soup`: average the weights of several runs (a sweep's best, or runs
named) into one model, scored and recorded as a run whose lineage names its
ingredients (engine/trained/soup.py does the averaging and the scoring)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import click

from tui.cli.base import RUN_ID, Failure, open_store
from tui.cli.output import dump_json, echo
from tui.formatting import metric
from tui.safe_text import printable


@click.command("soup")
@click.argument("run_ids", nargs=-1, type=RUN_ID)
@click.option("--sweep", "sweep_id", metavar="ID", help="The completed runs of this sweep.")
@click.option("--top", type=click.IntRange(min=2), metavar="K",
              help="With --sweep: only its K best runs.")
@click.option("--greedy", is_flag=True,
              help="Add runs best first, each kept only if validation accuracy improves "
                   "(default: every run, uniformly).")
@click.option("--name", metavar="NAME", help="The soup run's name (default: soup-of-...).")
@click.option("--json", "as_json", is_flag=True, help="Print the soup run as JSON.")
def runs_soup(run_ids: tuple[int, ...], sweep_id: str | None, top: int | None, greedy: bool,
              name: str | None, as_json: bool) -> None:
    """Average the weights of runs of one model and head into a new, recorded run."""
    from engine.trained.soup import Ingredient, make_soup

    store = open_store()
    runs = _ingredients(store, run_ids, sweep_id, top)
    best = runs[0]
    name = name or f"soup-of-{'-'.join(str(r.id) for r in runs)}"[:80]
    config = {**best.config, "name": name}
    run_id = store.create_run(config, name=name, model_id=best.model_id, task=best.task,
                              dataset=best.dataset, parent_id=best.id, tags=("soup",))
    lease = store.get_run(run_id).lease
    store.claim(run_id, lease, pid=os.getpid(), host=socket.gethostname(), env={})
    items = [Ingredient(r.id, Path(r.output_dir or "") / "model", r.config) for r in runs]
    target = Path(store.get_run(run_id).output_dir or "") / "model"
    try:
        soup = make_soup(items, target, greedy=greedy,
                         progress=lambda m: echo(f"soup: {m}", err=True))
    except BaseException as exc:
        store.finish(run_id, "failed", error=str(exc) if isinstance(exc, Exception) else
                     "Interrupted while the soup was made.", lease=lease)
        raise
    summary = {"watched_metric": "accuracy", "final_accuracy": soup.accuracy,
               "kept_eval": "final", "steps": 0,
               "soup": {"method": soup.method, "ingredients": list(soup.members),
                        "tried": {str(k): v for k, v in soup.tried.items()}}}
    alone = ", ".join(f"#{k} {metric(v)}" for k, v in soup.tried.items())
    store.add_event(run_id, f"A {soup.method} soup of runs "
                            f"{', '.join(map(str, soup.members))}: validation accuracy "
                            f"{metric(soup.accuracy)} (alone: {alone}).", "info", lease=lease)
    store.finish(run_id, "completed", summary=summary, lease=lease)
    if as_json:
        echo(dump_json({"id": run_id, "method": soup.method, "ingredients": list(soup.members),
                        "accuracy": soup.accuracy,
                        "alone": {str(k): v for k, v in soup.tried.items()}}))
        return
    echo(f"Run {run_id} ({printable(name, limit=80)}): a {soup.method} soup of runs "
         f"{', '.join(map(str, soup.members))}, validation accuracy {metric(soup.accuracy)} "
         f"(best alone {metric(max(soup.tried.values()))}). It exports and predicts like "
         "any run.")


def _ingredients(store, run_ids, sweep_id, top):
    """The runs to average, best first by their recorded result."""
    if bool(run_ids) == bool(sweep_id):
        raise Failure("Give the runs to average (two or more ids) or --sweep ID, not both.")
    if top is not None and not sweep_id:
        raise Failure("--top picks a sweep's best runs: add --sweep ID.")
    if sweep_id:
        from engine.runs.sweep import rank_sweep

        members = store.list_runs(sweep=sweep_id, sort="id", limit=None)
        if not members:
            raise Failure(f"There is no sweep {printable(sweep_id, limit=40)!r}.")
        ranked = [p.run for p in rank_sweep(members) if p.rank is not None
                  and p.run.status == "completed"]
        runs = ranked[:top] if top else ranked
    else:
        runs = [store.get_run(i) for i in dict.fromkeys(run_ids)]
    unfinished = [r.id for r in runs if r.status != "completed"]
    if unfinished:
        raise Failure(f"Run {unfinished[0]} is not completed; a soup is made of completed "
                      "runs' models.")
    if len(runs) < 2:
        raise Failure("A soup needs two or more completed runs of one model and head.")
    return runs
