"""`hubtune sweep CONFIG --search tpe`: a Bayesian search over the run queue
(engine.runs.search holds the study; each trial's worker asks the next)."""

from __future__ import annotations

from pathlib import Path

from tui.cli.base import open_store
from tui.cli.output import dump_json, echo


def start_search(config: Path, *, sampler: str, trials: int | None, ranges, choices,
                 prune: str, parallel: int | None, seed: int, overrides, processes: int,
                 as_json: bool) -> None:
    """Check the search, save it beside the store, and queue its first trials."""
    from engine.core.config import load_config
    from engine.launch.start import queue_trials
    from engine.runs.search import check_search, new_search, range_ends
    from tui.cli.train import check_inputs

    axes_r, axes_c = check_search(sampler=sampler, trials=trials, parallel=parallel,
                                  prune=prune, ranges=ranges, choices=choices)
    base = load_config(config, overrides)
    check_inputs(base)
    for point in range_ends(axes_r, axes_c):  # a typo queues nothing (as for a grid),
        load_config(config, [*overrides, point])  # rather than failing every trial asked
    store = open_store()
    spec = new_search(store, base, trials=trials, parallel=parallel, ranges=axes_r,
                      choices=axes_c, prune=prune, seed=seed, processes=processes)
    ids = queue_trials(store, spec)
    if as_json:
        echo(dump_json({"sweep_id": spec.sweep_id, "metric": spec.metric,
                        "direction": spec.direction, "trials": trials,
                        "parallel": spec.parallel, "runs": ids}))
        return
    echo(f"Search {spec.sweep_id}: {trials} trials, {spec.parallel} at a time, "
         f"{spec.direction.removesuffix('e')}ing {spec.metric}; queued "
         f"{', '.join(map(str, ids))}. `hubtune runs compare --sweep {spec.sweep_id}` "
         "ranks the trials.")



def resume_search(sweep_id: str, *, as_json: bool) -> None:
    """Carry on a search: its ended trials settled, the free places filled."""
    from engine.launch.start import queue_trials
    from engine.runs.search import load_spec
    from tui.cli.base import Failure
    from tui.safe_text import printable

    spec = load_spec(sweep_id)
    if spec is None:
        raise Failure(f"There is no search {printable(sweep_id, limit=40)!r} under this "
                      "HUBTUNE_HOME (sweeps/ID.json); `hubtune runs ls --json` shows each "
                      "run's sweep_id.")
    ids = queue_trials(open_store(), spec)
    if as_json:
        echo(dump_json({"sweep_id": spec.sweep_id, "runs": ids}))
        return
    echo(f"Search {spec.sweep_id}: queued {', '.join(map(str, ids)) or 'no new trials'}; "
         f"`hubtune runs compare --sweep {spec.sweep_id}` ranks the trials.")
