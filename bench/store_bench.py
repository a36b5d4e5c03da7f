"""Case 5: the store. Batched metric ingest against per-row commits, a 100k-point
series read, and a page of the runs list out of 10k runs."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import Result, interleaved, median_time
from store import RunStore

BATCH_ROWS = 200_000
BATCH_SIZE = 2_000
SINGLE_ROWS = 2_000


def run(repeats: int = 5) -> list[Result]:
    tmp = Path(tempfile.mkdtemp(prefix="hubtune-bench-store-"))
    store = RunStore(tmp / "bench.db")
    run_id = store.create_run({"bench": True})
    counter = {"step": 0}

    def rows(n: int):
        start = counter["step"]
        counter["step"] += n
        return [(start + i, 0.0, "loss", 1.0 / (i + 1), 0.0) for i in range(n)]

    def batched() -> float:
        data = [rows(BATCH_SIZE) for _ in range(BATCH_ROWS // BATCH_SIZE)]
        t = time.perf_counter()
        for chunk in data:
            store.log_metrics(run_id, chunk)
        return BATCH_ROWS / (time.perf_counter() - t)

    def per_row() -> float:
        data = rows(SINGLE_ROWS)
        t = time.perf_counter()
        for row in data:
            store.log_metrics(run_id, [row])
        return SINGLE_ROWS / (time.perf_counter() - t)

    rates = interleaved({"batched": batched, "per_row": per_row}, repeats)

    series_run = store.create_run({"bench": "series"})
    store.log_metrics(series_run, [(i, i / 1000, "loss", 1.0 / (i + 1), 0.0)
                                   for i in range(100_000)])
    read_s = median_time(lambda: store.series(series_run, "loss"), repeats)
    read_small_s = median_time(lambda: store.series(series_run, "loss", max_points=500), repeats)
    # The peer: the same points read as plain rows, one Python tuple per point.
    plain_s = median_time(lambda: store.db.conn.execute(
        "SELECT step, value FROM metrics WHERE run_id = ? AND name = 'loss' ORDER BY step",
        [series_run]).fetchall(), repeats)

    with store.connection.write() as conn:
        conn.executemany(
            "INSERT INTO runs (name, status, created_utc, config_json, model_id, task, dataset)"
            " VALUES (?,?,?,?,?,?,?)",
            [(f"run-{i}", "completed", f"2026-01-01T00:{i % 60:02d}:00+00:00",
              '{"train": {"lr": 1}}', f"org/model-{i % 37}", "text-classification",
              "train.csv") for i in range(10_000)],
        )
    page_s = median_time(lambda: store.list_runs(limit=50), repeats)
    search_s = median_time(lambda: store.list_runs(search="model-7", limit=50), repeats)
    store.close()

    return [
        Result("5 store", "metric ingest, batched (2k rows/commit)", rates["batched"],
               rates["per_row"], "one commit per row", "rows/s", ">= 100k rows/s",
               rates["batched"] >= 100_000),
        Result("5 store", "read a 100k-point series", read_s * 1000, unit="ms", target="< 50 ms",
               met=read_s < 0.050,
               notes=f"downsampled to 500 points: {read_small_s * 1000:.1f} ms; from packed "
                     f"blobs (one row per logged batch); the same points as plain rows "
                     f"(one Python tuple each, the read before packs): {plain_s * 1000:.1f} ms"),
        Result("5 store", "runs page (50 of 10k runs)", page_s * 1000, unit="ms",
               notes=f"with a text search: {search_s * 1000:.1f} ms"),
    ]
