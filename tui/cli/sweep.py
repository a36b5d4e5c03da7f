"""`hubtune sweep`: queue one run per point of a grid or random search, or the trials of a
Bayesian search (Optuna), all sharing a sweep id; `hubtune runs compare --sweep ID`
ranks them."""

from __future__ import annotations

from pathlib import Path

import click

from tui.cli.base import Failure, open_store
from tui.cli.output import dump_json, echo


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2",
              help="Values to try for a setting; several --grid make every combination.")
@click.option("--random", "random_n", type=int, metavar="N",
              help="A random search of N runs instead of the whole grid.")
@click.option("--range", "ranges", multiple=True, metavar="KEY=LO:HI[:log]",
              help="With --random: draw the setting between LO and HI (log scale with :log).")
@click.option("--search", "sampler", metavar="tpe",
              help="A Bayesian search (Optuna's TPE) of --trials runs over --range and "
                   "--choice: each trial's settings follow from the results so far.")
@click.option("--trials", type=int, metavar="N", help="With --search: how many runs in all.")
@click.option("--choice", "choices", multiple=True, metavar="KEY=A,B,...",
              help="With --search: values the search picks from for a setting.")
@click.option("--prune", type=click.Choice(["median", "asha", "none"]), default="median",
              show_default=True,
              help="With --search: stop a trial whose evaluation falls behind the others' at "
                   "the same step (median), by successive halving (asha), or never.")
@click.option("--parallel", type=click.IntRange(min=1), metavar="P",
              help="With --search: at most P trials at once (default: the queue's slots).")
@click.option("--resume", "resume_id", metavar="ID",
              help="Carry on search ID (after a reboot, or trials whose runs were killed): "
                   "settles the trials that ended unseen and queues the next ones.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random search.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value for every run, e.g. train.epochs=2.")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel processes (one GPU each) per run.")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep id and runs as JSON.")
def sweep(config: Path, grid: tuple[str, ...], random_n: int | None, ranges: tuple[str, ...],
          sampler: str | None, trials: int | None, choices: tuple[str, ...], prune: str,
          parallel: int | None, resume_id: str | None, seed: int, overrides: tuple[str, ...],
          processes: int, as_json: bool) -> None:
    """Queue one run per point of a sweep over CONFIG, or with --search the first trials
    of a Bayesian search; prints the sweep id and run ids."""
    if resume_id is not None:
        from tui.cli.sweep_search import resume_search

        resume_search(resume_id, as_json=as_json)
        return
    if config is None:
        raise Failure("Give the CONFIG to sweep over (or --resume ID to carry on a search).")
    if sampler is not None:
        from tui.cli.sweep_search import start_search

        if grid or random_n is not None:
            raise Failure("--search picks its own points: give --range and --choice, not "
                          "--grid or --random.")
        start_search(config, sampler=sampler, trials=trials, ranges=ranges, choices=choices,
                     prune=prune, parallel=parallel, seed=seed, overrides=overrides,
                     processes=processes, as_json=as_json)
        return
    if choices or trials is not None or parallel is not None:
        raise Failure("--choice, --trials and --parallel belong to a search: add --search tpe.")
    from engine.core.config import load_config
    from engine.launch.start import queue_sweep
    from engine.runs.sweep import parse_grid, parse_range, sweep_points, sweep_run_named
    from tui.cli.train import check_inputs

    points = sweep_points([parse_grid(g) for g in grid], [parse_range(r) for r in ranges],
                          random_n, seed)
    base = load_config(config, overrides)
    check_inputs(base)
    # every point is checked before any is queued: a typo queues nothing
    configs = [sweep_run_named(load_config(config, [*overrides, *point]), base.name, i)
               for i, point in enumerate(points, 1)]
    store = open_store()
    sweep_id, ids = queue_sweep(store, configs, processes=processes)
    if as_json:
        echo(dump_json({"sweep_id": sweep_id, "runs": [
            {"id": run_id, "overrides": list(point)}
            for run_id, point in zip(ids, points, strict=True)]}))
        return
    echo(f"Sweep {sweep_id}: queued {len(ids)} runs; `hubtune runs compare --sweep "
         f"{sweep_id}` ranks them.")
    for run_id, point in zip(ids, points, strict=True):
        echo(f"{run_id:>5}  {' '.join(point)}")
