"""Dataset repos for the loopback hub: parquet shards and a README declaring subsets.

`write_sentiment_repo(folder)` writes a repo with two subsets, as the hub's
parquet layout has them:

    README.md                     YAML `configs:` (reviews: default, short) and dataset_info
    reviews/train-0000{0,1}-of-00002.parquet   text, label (ClassLabel neg/pos)
    reviews/validation-00000-of-00001.parquet
    short/train-00000-of-00001.parquet          sentence, score (a float; no validation)

The rows are the sentiment words of tests/support/tiny_models.py, so a tiny
BERT learns them in a few steps.
"""

from __future__ import annotations

import random
from pathlib import Path

POSITIVE = ("great", "lovely", "superb", "wonderful", "excellent", "good")
NEGATIVE = ("awful", "terrible", "dreadful", "horrible", "bad", "poor")

README = """---
license: mit
task_categories:
- text-classification
size_categories:
- n<1K
configs:
- config_name: reviews
  default: true
  data_files:
  - split: train
    path: reviews/train-*
  - split: validation
    path: reviews/validation-*
- config_name: short
  data_files:
  - split: train
    path: short/train-*
dataset_info:
- config_name: reviews
  features:
  - name: text
    dtype: string
  - name: label
    dtype:
      class_label:
        names:
          '0': neg
          '1': pos
  splits:
  - name: train
    num_examples: {train_rows}
  - name: validation
    num_examples: {val_rows}
- config_name: short
  features:
  - name: sentence
    dtype: string
  - name: score
    dtype: float32
  splits:
  - name: train
    num_examples: {short_rows}
---
# sentiment (a test dataset)

Reviews labelled neg/pos, in two subsets.
"""


def _rows(n: int, seed: int) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = i % 2
        words = POSITIVE if label else NEGATIVE
        texts.append(f"the film was {rng.choice(words)} and {rng.choice(words)}")
        labels.append(label)
    return texts, labels


def write_sentiment_repo(folder: Path, *, train_rows: int = 96, val_rows: int = 32,
                         short_rows: int = 40) -> Path:
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    (folder / "reviews").mkdir(parents=True, exist_ok=True)
    (folder / "short").mkdir(exist_ok=True)
    texts, labels = _rows(train_rows, 0)
    half = train_rows // 2
    for i, cut in enumerate((slice(0, half), slice(half, None))):
        part = datasets.Dataset.from_dict({"text": texts[cut], "label": labels[cut]},
                                          features=features)
        part.to_parquet(str(folder / "reviews" / f"train-0000{i}-of-00002.parquet"))
    texts, labels = _rows(val_rows, 1)
    datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features).to_parquet(
        str(folder / "reviews" / "validation-00000-of-00001.parquet"))
    texts, labels = _rows(short_rows, 2)
    datasets.Dataset.from_dict({"sentence": texts, "score": [float(x) for x in labels]}
                               ).to_parquet(str(folder / "short" / "train-00000-of-00001.parquet"))
    (folder / "README.md").write_text(README.format(train_rows=train_rows, val_rows=val_rows,
                                                    short_rows=short_rows), encoding="utf-8")
    return folder


def write_plain_repo(folder: Path, rows: int = 40) -> Path:
    """A repo with no README: `data/train-*.parquet` and `data/test-*.parquet` (string labels)."""
    import datasets

    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, seed in (("train", 3), ("test", 4)):
        texts, labels = _rows(rows, seed)
        datasets.Dataset.from_dict({"review": texts,
                                    "sentiment": ["pos" if x else "neg" for x in labels]}
                                   ).to_parquet(str(folder / "data" /
                                                    f"{split}-00000-of-00001.parquet"))
    return folder
