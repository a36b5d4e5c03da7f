"""Small, learnable data files for every head, written by the tests themselves."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

POS = ["good", "great", "nice", "lovely", "happy", "excellent", "wonderful", "fun"]
NEG = ["bad", "awful", "poor", "sad", "terrible", "horrible", "boring", "ugly"]
NOUNS = ["movie", "film", "day", "food", "show", "book", "song", "place", "service"]
FILLER = ["the", "very", "really", "so", "it"]


def _sentence(rng: random.Random) -> tuple[list[str], str, str]:
    noun, adj = rng.choice(NOUNS), rng.choice(POS + NEG)
    words = [rng.choice(FILLER) for _ in range(rng.randint(0, 3))] + ["the", noun, "was", adj]
    return words, noun, adj


def write_token_jsonl(path: Path, rows: int = 80, seed: int = 0) -> Path:
    """Words with BIO tags: the noun is a THING, the adjective a POS or NEG mention."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            words, noun, adj = _sentence(rng)
            tags = ["B-THING" if w == noun else "B-POS" if w in POS else "B-NEG" if w in NEG
                    else "O" for w in words]
            fh.write(json.dumps({"tokens": words, "tags": tags}) + "\n")
    return path


def write_conll(path: Path, rows: int = 40, seed: int = 1) -> Path:
    rng = random.Random(seed)
    lines = []
    for _ in range(rows):
        words, noun, _ = _sentence(rng)
        lines += [f"{w} {'B-THING' if w == noun else 'O'}" for w in words] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def qa_rows(rows: int = 60, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(rows):
        noun, other = rng.sample(NOUNS, 2)
        adj, bad = rng.choice(POS), rng.choice(NEG)
        context = f"the {noun} was {adj} . the {other} was {bad} ."
        start = context.index(noun)
        out.append({"id": str(i), "question": f"what was {adj} ?", "context": context,
                    "answers": {"text": [noun], "answer_start": [start]}})
    return out


def write_qa_jsonl(path: Path, rows: int = 60, seed: int = 0) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in qa_rows(rows, seed)) + "\n",
                    encoding="utf-8")
    return path


def write_squad_json(path: Path, rows: int = 20, seed: int = 3) -> Path:
    paragraphs = [{"context": r["context"], "qas": [{
        "id": r["id"], "question": r["question"],
        "answers": [{"text": r["answers"]["text"][0],
                     "answer_start": r["answers"]["answer_start"][0]}]}]}
        for r in qa_rows(rows, seed)]
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}),
                    encoding="utf-8")
    return path


def write_text_csv(path: Path, rows: int = 60, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text"])
        for _ in range(rows):
            writer.writerow([" ".join(_sentence(rng)[0])])
    return path


def write_seq2seq_csv(path: Path, rows: int = 60, seed: int = 0) -> Path:
    """Target = the source's noun and adjective: a copy task a tiny model can start on."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["source", "target"])
        for _ in range(rows):
            words, noun, adj = _sentence(rng)
            writer.writerow([" ".join(words), f"{noun} {adj}"])
    return path


def write_pair_csv(path: Path, rows: int = 60, seed: int = 0) -> Path:
    """Pairs labelled same / different by whether both adjectives share a sentiment."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "text_pair", "label"])
        for i in range(rows):
            a = rng.choice(POS)
            b = rng.choice(POS if i % 2 else NEG)
            writer.writerow([f"the movie was {a}", f"the food was {b}",
                             "same" if i % 2 else "different"])
    return path


def write_multilabel_csv(path: Path, rows: int = 60, seed: int = 0) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for _ in range(rows):
            words, noun, adj = _sentence(rng)
            labels = ["positive" if adj in POS else "negative"]
            if noun in ("food", "place", "service"):
                labels.append("venue")
            writer.writerow([" ".join(words), "|".join(labels)])
    return path


def write_digits_folder(root: Path, per_class: int | None = None, classes=range(10)) -> Path:
    """scikit-learn's 8x8 digits as PNG files, one folder per digit."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts: dict[int, int] = {}
    for image, target in zip(digits.images, digits.target, strict=True):
        target = int(target)
        if target not in classes or (per_class and counts.get(target, 0) >= per_class):
            continue
        counts[target] = counts.get(target, 0) + 1
        folder = root / str(target)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (image / 16.0 * 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{target}-{counts[target]:04d}.png")
    return root
