"""Bayesian search over the run queue (`hubtune sweep --search tpe`), through Optuna.

A search is a sweep whose points are asked of an Optuna study (TPE sampler; a median
or successive-halving pruner) one trial at a time, each trial a queued run sharing the
sweep's id. The study lives beside the run store, in `sweeps/ID.journal` under
`$HUBTUNE_HOME` (Optuna's journal storage: one append-only file, safe for several
processes, no server), with the search's settings and base config in `sweeps/ID.json`,
so a search outlives the TUI, an SSH session and a reboot.

No babysitter, as with the queue: the CLI asks the first trials; each trial's worker
reports its evaluations to the study (and stops when the pruner says so), tells the
study its result when its run ends, and asks the next trial in its place. A lock file
keeps two workers ending at once from asking more trials than the search allows.
"""

from __future__ import annotations

import fcntl
import json
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.core.config import lower_is_better
from engine.core.errors import ConfigError, HubtuneError
from engine.runs.sweep import GridAxis, RangeAxis, parse_grid, parse_range

SAMPLERS = ("tpe",)
PRUNERS = ("median", "asha", "none")
MAX_TRIALS = 1000
WARMUP_PARTS = 3
"""A trial is compared with the others from 1/WARMUP_PARTS of its planned steps on."""
MIN_TRIALS_FOR_IMPORTANCE = 4
"""Completed trials before `runs compare --sweep` shows the parameters' importances."""
RUN_ATTR = "hubtune_run_id"
"""The trial's user attribute naming the run that trains it."""


@dataclass(frozen=True)
class SearchSpec:
    """What a search asks for, saved as `sweeps/ID.json` when it starts."""

    sweep_id: str
    trials: int
    parallel: int
    metric: str
    """The validation metric the runs watch (their kept model's is the trial's value)."""
    ranges: tuple[RangeAxis, ...] = ()
    choices: tuple[GridAxis, ...] = ()
    prune: str = "median"
    seed: int = 0
    processes: int = 1
    name: str = "search"
    base: dict[str, Any] = field(default_factory=dict)
    """The config every trial starts from (its overrides on top)."""

    @property
    def direction(self) -> str:
        return "minimize" if lower_is_better(self.metric) else "maximize"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> SearchSpec:
        raw = json.loads(text)
        raw["ranges"] = tuple(RangeAxis(**r) for r in raw.get("ranges", ()))
        raw["choices"] = tuple(GridAxis(c["key"], tuple(c["values"]))
                               for c in raw.get("choices", ()))
        return cls(**raw)


def check_search(*, sampler: str, trials: int | None, parallel: int | None,
                 prune: str, ranges: Sequence[str], choices: Sequence[str]
                 ) -> tuple[tuple[RangeAxis, ...], tuple[GridAxis, ...]]:
    """The axes of a search as the CLI gives them, or one sentence saying what is wrong."""
    if sampler not in SAMPLERS:
        raise ConfigError(f"--search {sampler!r} is not a search hubtune knows; use "
                          f"{', '.join(SAMPLERS)}.")
    if prune not in PRUNERS:
        raise ConfigError(f"--prune {prune!r} must be one of {', '.join(PRUNERS)}.")
    if trials is None or not 1 <= trials <= MAX_TRIALS:
        raise ConfigError(f"--search needs --trials N, between 1 and {MAX_TRIALS:,}.")
    if parallel is not None and parallel < 1:
        raise ConfigError(f"--parallel must be 1 or more, got {parallel}.")
    axes_r = tuple(parse_range(r) for r in ranges)
    try:
        axes_c = tuple(parse_grid(c) for c in choices)
    except ConfigError as exc:  # its sentence names the option
        raise ConfigError(str(exc).replace("--grid", "--choice", 1)) from None
    keys = [a.key for a in (*axes_r, *axes_c)]
    if not keys:
        raise ConfigError("--search needs something to search: --range KEY=LO:HI[:log] or "
                          "--choice KEY=A,B.")
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(f"The search names {twice[0]} twice; give each key one --range or "
                          "--choice.")
    return axes_r, axes_c


def range_ends(ranges: Sequence[RangeAxis], choices: Sequence[GridAxis]) -> list[str]:
    """Each searched setting at the ends of its range and at each of its choices, as the
    trials will set it (KEY=VALUE): a config checked at each catches a typo before any
    trial is queued."""
    points = []
    for axis in ranges:
        for end in (axis.low, axis.high):
            points.append(f"{axis.key}={int(end) if axis.integer else format(end, '.6e')}")
    return points + [f"{c.key}={v}" for c in choices for v in c.values]


def new_search(store, base, *, trials: int, parallel: int | None, ranges, choices,
               prune: str, seed: int, processes: int = 1) -> SearchSpec:
    """A checked search over the config `base` (a RunConfig), saved beside the store:
    it watches the trials' result metric and runs `parallel` trials at once (by default
    as many as the queue's slots hold runs of `processes`)."""
    from engine.runs.queue import read_slots
    from engine.runs.sweep import new_sweep_id
    from engine.tasks import task_for
    from engine.training.setup import watched_metric

    slots = max(1, len(read_slots(store)) // max(processes, 1))
    spec = SearchSpec(sweep_id=new_sweep_id(), trials=trials,
                      metric=watched_metric(base, task_for(base.head.task)),
                      parallel=parallel or slots, ranges=tuple(ranges), choices=tuple(choices),
                      prune=prune, seed=seed, processes=processes,
                      name=base.name or "search", base=base.to_dict())
    save_spec(spec)
    return spec


# -- where a search lives -------------------------------------------------------


def sweeps_dir() -> Path:
    from store.paths import data_dir

    return data_dir() / "sweeps"


def spec_path(sweep_id: str) -> Path:
    return sweeps_dir() / f"{sweep_id}.json"


def save_spec(spec: SearchSpec) -> None:
    folder = sweeps_dir()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = spec_path(spec.sweep_id).with_suffix(".json.tmp")
    tmp.write_text(spec.to_json(), encoding="utf-8")
    tmp.replace(spec_path(spec.sweep_id))


def load_spec(sweep_id: str | None) -> SearchSpec | None:
    """The search `sweep_id` names, or None for a grid or random sweep (or no sweep)."""
    if not sweep_id or not sweep_id.isalnum():
        return None
    path = spec_path(sweep_id)
    try:
        return SearchSpec.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise HubtuneError(f"The search file {path} cannot be read ({exc}); the sweep's runs "
                           "are kept, but no more trials start.") from None


_held = threading.local()


@contextmanager
def locked(sweep_id: str) -> Iterator[None]:
    """One process at a time asks or tells this search's study. Re-entrant within a
    thread, so a caller can hold it over several steps (engine.launch.start.queue_trials:
    settling, asking and binding trials) that each take it too."""
    held = getattr(_held, "ids", None)
    if held is None:
        held = _held.ids = set()
    if sweep_id in held:
        yield
        return
    sweeps_dir().mkdir(parents=True, exist_ok=True)
    with open(sweeps_dir() / f"{sweep_id}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a new open file: other threads wait here too
        held.add(sweep_id)
        try:
            yield
        finally:
            held.discard(sweep_id)
            fcntl.flock(lock, fcntl.LOCK_UN)


_locked = locked


def _optuna():
    try:
        import optuna
        import optuna.storages.journal  # the journal file backend, by attribute below
    except ImportError:
        raise HubtuneError("A search needs Optuna: pip install 'hubtune[search]'.") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def startup_trials(trials: int) -> int:
    """Random trials before TPE models the results. Optuna's default (10) suits studies
    of a hundred trials; a sweep on one GPU box runs a dozen, where ten random draws
    would leave TPE two picks. A quarter of the budget, between 3 and 10. Also the
    trials that complete before a pruner judges any (`_should_prune`)."""
    return min(10, max(3, trials // 4))


def _sampler(optuna, spec: SearchSpec, asked: int = 0):
    # Each ask opens the study afresh (often in another trial's worker): a sampler seeded
    # alike each time would draw the same first point each time, hence `asked`.
    return optuna.samplers.TPESampler(seed=spec.seed + asked, multivariate=True,
                                      n_startup_trials=startup_trials(spec.trials))


def warmup_steps(planned_steps: int) -> int:
    """The steps a trial planned to take `planned_steps` runs before it is compared with
    the others: a third. A head's first evaluations say little about where it ends (fast
    at a high learning rate and then flat, slow to start at a low one): judged at its
    first evaluation, a slow starter is pruned before it shows where it goes."""
    return -(-planned_steps // WARMUP_PARTS)


def _pruner(optuna, spec: SearchSpec, planned_steps: int | None = None):
    """The search's pruner for a trial planned to take `planned_steps` optimizer steps
    (None: not known; no warm-up)."""
    warmup = warmup_steps(planned_steps) if planned_steps else 0
    if spec.prune == "median":
        # Before the sampler's start-up trials completed, the median is that of two or
        # three random points: noise to prune by.
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials(spec.trials),
                                           n_warmup_steps=warmup)
    if spec.prune == "asha":
        # Rungs at a third of the steps and at the end (reduction factor 3): the top third
        # at the first rung go on. Optuna's "auto" (a hundredth of the first completed
        # trial's steps) judges a trial at its first evaluation.
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=warmup or "auto",
                                                      reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(spec: SearchSpec):
    """The search's study, created on first use."""
    return _open(spec)[0]


def _open(spec: SearchSpec):
    """(the study, its journal storage): trials are reached by id through the storage's
    public API, the one Optuna's own processes share a study by."""
    optuna = _optuna()
    sweeps_dir().mkdir(parents=True, exist_ok=True)
    journal = str(sweeps_dir() / f"{spec.sweep_id}.journal")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(journal))
    sampler, pruner = _sampler(optuna, spec), _pruner(optuna, spec)
    try:  # loading writes nothing; create_study(load_if_exists) logs a line each time
        study = optuna.load_study(study_name=spec.sweep_id, storage=storage, sampler=sampler,
                                  pruner=pruner)
    except KeyError:  # the search's first use
        study = optuna.create_study(
            study_name=spec.sweep_id, storage=storage, load_if_exists=True,
            direction=spec.direction, sampler=sampler, pruner=pruner)
    return study, storage


# -- asking -----------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    number: int
    overrides: tuple[str, ...]


def ask(spec: SearchSpec, running: int) -> list[Trial]:
    """New trials for the free places: up to `spec.parallel` trials may be running (or
    waiting), and `spec.trials` asked in all. `running`: how many are now."""
    with _locked(spec.sweep_id):
        study = open_study(spec)
        asked = len(study.get_trials(deepcopy=False))
        study.sampler = _sampler(_optuna(), spec, asked)
        room = min(spec.parallel - running, spec.trials - asked)
        trials = []
        for _ in range(max(room, 0)):
            trial = study.ask()
            overrides = [f"{r.key}={_suggest(trial, r)}" for r in spec.ranges]
            overrides += [f"{c.key}={trial.suggest_categorical(c.key, list(c.values))}"
                          for c in spec.choices]
            trials.append(Trial(trial.number, tuple(overrides)))
        return trials


def _suggest(trial, axis: RangeAxis) -> str:
    if axis.integer:
        return str(trial.suggest_int(axis.key, int(axis.low), int(axis.high), log=axis.log))
    value = trial.suggest_float(axis.key, axis.low, axis.high, log=axis.log)
    return f"{value:.6e}"  # a point and an exponent: YAML reads it back as a float


def bind(spec: SearchSpec, number: int, run_id: int) -> None:
    """Record that run `run_id` trains trial `number`."""
    with _locked(spec.sweep_id):
        study, storage = _open(spec)
        study.set_user_attr(f"trial-{number}", run_id)  # the study's index: run -> trial
        storage.set_trial_user_attr(_trial_id(study, storage, number), RUN_ATTR, run_id)


def _trial_id(study, storage, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), number)


def trial_of(spec: SearchSpec, run_id: int) -> int | None:
    """The trial number run `run_id` trains, if it is one of the search's."""
    study = open_study(spec)
    number = {v: k for k, v in study.user_attrs.items()}.get(run_id)
    return int(number.removeprefix("trial-")) if number else None


# -- reporting and telling -----------------------------------------------------------


def report(spec: SearchSpec, number: int, step: int, metrics: dict[str, float],
           planned_steps: int | None = None) -> bool:
    """Tell the study trial `number`'s evaluation at `step` (metrics named as the runs
    record them, `val_` first); True: the pruner stops it. `planned_steps`: the steps the
    trial's run means to take (its RunPrepared's); None: as many as the longest completed
    trial took."""
    value = metrics.get(f"val_{spec.metric}", metrics.get(spec.metric))
    if value is None or not math.isfinite(value):
        return False
    with _locked(spec.sweep_id):
        study, storage = _open(spec)
        trial_id = _trial_id(study, storage, number)
        if storage.get_trial(trial_id).state.is_finished():
            return False  # told already (a trial's run resumed after it ended): not again
        storage.set_trial_intermediate_value(trial_id, step, float(value))
        return _should_prune(study, storage.get_trial(trial_id), spec, planned_steps)


def _should_prune(study, trial, spec: SearchSpec, planned_steps: int | None) -> bool:
    optuna = _optuna()
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    planned = planned_steps or max((t.last_step for t in done if t.last_step is not None),
                                   default=None)
    if planned is None or trial.last_step >= planned:
        return False  # nothing to compare against, or its last evaluation: nothing to save
    # Asked even before the start-up trials completed: successive halving records each
    # trial's value at a rung as it passes, for the later trials to be ranked against.
    verdict = bool(_pruner(optuna, spec, planned).prune(study, trial))
    return verdict and len(done) >= startup_trials(spec.trials)


class TrialWatch:
    """A trial's evaluations as its worker's store thread reports them (never the
    training thread: the study is a file under a lock)."""

    def __init__(self, spec: SearchSpec, number: int) -> None:
        self.spec, self.number = spec, number
        self.pruned_at: int | None = None
        """The step whose evaluation the pruner stopped the trial at."""
        self.planned_steps: int | None = None
        """The steps the trial's run means to take, once its RunPrepared says."""

    def report(self, step: int, metrics: dict[str, float]) -> bool:
        """True once the pruner has stopped the trial."""
        if self.pruned_at is None and report(self.spec, self.number, step, metrics,
                                             self.planned_steps):
            self.pruned_at = step
        return self.pruned_at is not None


def tell(spec: SearchSpec, number: int, status: str, value: float | None) -> None:
    """The trial's end: its run's result when it completed (or stopped early), pruned,
    or failed (a run that failed, or ended without a value of the metric)."""
    optuna = _optuna()
    state = optuna.trial.TrialState
    with _locked(spec.sweep_id):
        study = open_study(spec)
        if status == "pruned":
            study.tell(number, state=state.PRUNED, skip_if_finished=True)
        elif value is not None and math.isfinite(value) and status in ("completed", "stopped"):
            study.tell(number, float(value), skip_if_finished=True)
        else:
            study.tell(number, state=state.FAIL, skip_if_finished=True)


def running_trials(spec: SearchSpec) -> dict[int, int | None]:
    """The trials the study still counts as running: trial number -> its run's id (None
    for a trial asked but never given a run: its launcher died in between)."""
    optuna = _optuna()
    study = open_study(spec)
    runs = {int(k.removeprefix("trial-")): v for k, v in study.user_attrs.items()
            if k.startswith("trial-")}
    return {t.number: runs.get(t.number)
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}


def importances(spec: SearchSpec) -> dict[str, float]:
    """Each searched setting's importance to the result, once enough trials completed
    (empty before)."""
    optuna = _optuna()
    study = open_study(spec)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError):  # every trial alike: nothing to tell apart
        return {}
