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

import contextlib
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


# -- repos for the other heads --------------------------------------------------------

TAGS = ("O", "B-THING", "B-POS", "B-NEG")
TRANSLATION_README = """---
configs:
- config_name: de-en
  data_files:
  - split: train
    path: de-en/train-*
  - split: validation
    path: de-en/validation-*
---
# translate (a test dataset)
"""


def _tagged(n: int, seed: int) -> list[tuple[list[str], list[str], str]]:
    """(words, BIO tags, 'noun adj') per row, as tests/support/task_data.py writes them."""
    from tests.support.task_data import NEG, POS, _sentence

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words, noun, adj = _sentence(rng)
        tags = ["B-THING" if w == noun else "B-POS" if w in POS else "B-NEG" if w in NEG
                else "O" for w in words]
        rows.append((words, tags, f"{noun} {adj}"))
    return rows


def write_ner_repo(folder: Path, rows: int = 64) -> Path:
    """conll2003-shaped: `tokens` and `ner_tags` (a ClassLabel sequence), train and
    validation, plus a row without words in train (left out with a warning)."""
    import datasets

    features = datasets.Features({"id": datasets.Value("string"),
                                  "tokens": datasets.List(datasets.Value("string")),
                                  "ner_tags": datasets.List(datasets.ClassLabel(names=TAGS))})
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", rows, 5), ("validation", rows // 4, 6)):
        data = _tagged(n, seed)
        tokens = [w for w, _, _ in data] + ([[]] if split == "train" else [])
        tags = [[TAGS.index(t) for t in ts] for _, ts, _ in data] + (
            [[]] if split == "train" else [])
        datasets.Dataset.from_dict({"id": [str(i) for i in range(len(tokens))],
                                    "tokens": tokens, "ner_tags": tags},
                                   features=features).to_parquet(
            str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


def write_copy_repo(folder: Path, rows: int = 48) -> Path:
    """seq2seq with columns `document` and `summary` (read in place of text and label),
    one row without a summary; a train split only."""
    import datasets

    data = _tagged(rows, 7)
    documents = [" ".join(w) for w, _, _ in data]
    summaries = [s for _, _, s in data]
    summaries[3] = None
    (folder / "data").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict({"document": documents, "summary": summaries}).to_parquet(
        str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def write_translation_repo(folder: Path, rows: int = 48) -> Path:
    """A `translation` column (de, en) in a subset named de-en, train and validation."""
    import datasets

    features = datasets.Features({"translation": datasets.Translation(languages=["de", "en"])})
    (folder / "de-en").mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", rows, 8), ("validation", rows // 4, 9)):
        pairs = [{"de": " ".join(w), "en": s} for w, _, s in _tagged(n, seed)]
        datasets.Dataset.from_dict({"translation": pairs}, features=features).to_parquet(
            str(folder / "de-en" / f"{split}-00000-of-00001.parquet"))
    (folder / "README.md").write_text(TRANSLATION_README, encoding="utf-8")
    return folder


def write_text_repo(folder: Path, rows: int = 48) -> Path:
    """Language-model text in a column `content` (read in place of text), blank rows
    among them; a train split only."""
    import datasets

    texts = [" ".join(w) for w, _, _ in _tagged(rows, 10)]
    texts[1], texts[2] = "", None
    (folder / "data").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict({"content": texts, "n": list(range(rows))}).to_parquet(
        str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def _png(light: bool, rng: random.Random) -> bytes:
    import io

    from PIL import Image

    low, high = (170, 255) if light else (0, 85)
    img = Image.new("RGB", (16, 16))
    img.putdata([tuple(rng.randint(low, high) for _ in range(3)) for _ in range(256)])
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def write_image_repo(folder: Path, rows: int = 40) -> Path:
    """`image` (an Image feature, PNG bytes) and `label` (ClassLabel dark/light); row 3 of
    train is not an image."""
    import datasets

    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["dark", "light"])})
    rng = random.Random(11)
    images = [{"bytes": _png(bool(i % 2), rng), "path": None} for i in range(rows)]
    images[2] = {"bytes": b"not an image", "path": None}
    (folder / "data").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict({"image": images, "label": [i % 2 for i in range(rows)]},
                               features=features).to_parquet(
        str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def write_squad_repo(folder: Path) -> Path:
    """SQuAD-shaped: id, question, context, answers {text, answer_start}; train and
    validation."""
    import datasets

    from tests.support.task_data import qa_rows

    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 40, 12), ("validation", 12, 13)):
        datasets.Dataset.from_list(qa_rows(n, seed)).to_parquet(
            str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


def write_task_repos(root: Path) -> dict[str, Path]:
    """Every head's dataset repo: repo id -> folder."""
    return {"hubtune-test/ner-data": write_ner_repo(root / "ner-data"),
            "hubtune-test/squad-data": write_squad_repo(root / "squad-data"),
            "hubtune-test/image-data": write_image_repo(root / "image-data"),
            "hubtune-test/copy-data": write_copy_repo(root / "copy-data"),
            "hubtune-test/translate-data": write_translation_repo(root / "translate-data"),
            "hubtune-test/text-data": write_text_repo(root / "text-data")}


@contextlib.contextmanager
def serve_repos(repos: list, monkeypatch):
    """A loopback hub holding `repos` (hub_server.Repo), huggingface_hub pointed at it for
    the test (conftest's hub_server, for a test's own set of repos)."""
    import huggingface_hub.constants as hf_constants

    from tests.support.hub_server import HubServer

    with HubServer(repos) as server:
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.url)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server
