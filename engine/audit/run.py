"""`hubtune data audit CONFIG`: the config's data looked at with the config's model as a
frozen feature extractor, before any training (engine/audit/findings.py says what is
found and how).

Features are the model's last hidden states mean-pooled over the tokens, computed once
per (model, file content, columns, length) and cached under hubtune's data directory,
so auditing again, or after editing the config's training keys, costs nothing. Rows
are numbered as the data reader numbers them: 0-based data rows, header excluded.

For now: local files of text (and text-pair) classification with one label per row;
other data gets one sentence saying what is audited for it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine.audit.findings import (
    degenerate_inputs,
    find_duplicates,
    find_label_issues,
    find_leaks,
    rare_labels,
)
from engine.core.config import RunConfig, is_hub_data
from engine.core.errors import DataError

RARE = 5
"""Labels with fewer examples than this are listed as rare."""
BATCH = 32


@dataclass
class Split:
    name: str
    path: Path
    rows: list[int]
    texts: list[str]
    labels: list[str]


@dataclass
class AuditReport:
    label_issues: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    leaks: list[dict] = field(default_factory=list)
    degenerate: list[dict] = field(default_factory=list)
    rare_labels: list[dict] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def read_split(cfg: RunConfig, name: str, value: str) -> Split:
    """A data file's rows with an input and a label (rows missing either are left out)."""
    from engine.data.reader import read_columns

    path = cfg.resolve(value)
    if path.is_dir():
        raise DataError(f"data.{name} {path.name} is a folder of images; the audit reads "
                        "text classification files for now.")
    d = cfg.data
    columns = [d.text_column, *([d.text_pair_column] if d.text_pair_column else []),
               d.label_column]
    rows, texts, labels = [], [], []
    for i, values in enumerate(read_columns(path, columns, encoding=d.encoding)):
        text = " ||| ".join(values[:-1]) if d.text_pair_column else values[0]
        if values[-1].strip():
            rows.append(i)
            texts.append(text)
            labels.append(values[-1].strip())
    return Split(name, path, rows, texts, labels)


def audit(cfg: RunConfig, *, folds: int = 5, seed: int = 0,
          progress: Callable[[str], None] | None = None,
          stop: threading.Event | None = None) -> AuditReport:
    """Audit the config's training data (and its validation file, if it names one)."""
    _check_audited(cfg)
    say = progress or (lambda message: None)
    splits = [read_split(cfg, "train", cfg.data.train)]
    if cfg.data.validation:
        splits.append(read_split(cfg, "validation", cfg.data.validation))
    report = AuditReport(rows={s.name: len(s.texts) for s in splits})
    if not cfg.data.validation:
        report.notes.append("No validation file: the run holds out a seeded split of the "
                            "training file, so exact and near duplicates inside it are the "
                            "leaks to look at.")
    features = {}
    for s in splits:
        say(f"features of {s.path.name} ({len(s.texts)} rows)")
        features[s.name] = _features(cfg, s, stop)
    for s in splits:
        report.degenerate += degenerate_inputs(s.texts, split=s.name, rows=s.rows)
        report.duplicates += [asdict(d) for d in find_duplicates(
            s.texts, features[s.name], split=s.name, rows=s.rows)]
    train = splits[0]
    names = sorted(set(train.labels))
    index = {n: i for i, n in enumerate(names)}
    codes = [index[label] for label in train.labels]
    report.rare_labels = rare_labels(codes, names, minimum=RARE)
    say(f"label check: {folds}-fold out-of-sample probabilities")
    try:
        report.label_issues = [asdict(i) for i in find_label_issues(
            features["train"], codes, names, split="train", folds=folds, seed=seed,
            rows=train.rows)]
    except DataError as exc:
        report.notes.append(str(exc))
    if len(splits) == 2:
        val = splits[1]
        report.leaks = [asdict(leak) for leak in find_leaks(
            train.texts, val.texts, features["train"], features["validation"],
            train_rows=train.rows, validation_rows=val.rows)]
    return report


def _check_audited(cfg: RunConfig) -> None:
    from engine.tasks import task_for

    if is_hub_data(cfg.data.train) or is_hub_data(cfg.data.validation):
        raise DataError("The audit reads local data files for now; download the split "
                        "(hubtune data preview shows it) or audit a local copy.")
    adapter = task_for(cfg.head.task)
    if getattr(adapter, "label_kind", None) != "single_label" or adapter.vision:
        raise DataError(f"The audit checks single-label text classification data for now "
                        f"(labels, duplicates, leaks); head.task {cfg.head.task} data is "
                        "not audited yet.")


def _features(cfg: RunConfig, split: Split, stop: threading.Event | None):
    """Mean-pooled last hidden states of the config's model for `split`'s inputs, from
    the cache when this model has read this content before."""
    import numpy as np

    from engine.modeling.loading import resolve_model_path

    model_path = resolve_model_path(cfg.model)
    key = hashlib.sha256(json.dumps([str(model_path), cfg.data.max_length,
                                     split.texts]).encode()).hexdigest()[:32]
    from store.paths import data_dir

    cache = data_dir() / "cache" / "audit" / f"{key}.npy"
    if cache.is_file():
        return np.load(cache)
    found = _embed(cfg, model_path, split.texts, stop)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, found)
    return found


def _embed(cfg: RunConfig, model_path: Path, texts: list[str], stop):
    import numpy as np
    import torch
    from transformers import AutoModel

    from engine.modeling.loading import load_tokenizer, quiet_transformers

    quiet_transformers()
    tokenizer, _ = load_tokenizer(cfg.model, model_path)
    model = AutoModel.from_pretrained(model_path).eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), BATCH):
            if stop is not None and stop.is_set():
                raise DataError("The audit was stopped before its features were read.")
            batch = texts[start:start + BATCH]
            pairs = [t.split(" ||| ", 1) for t in batch]
            enc = (tokenizer([p[0] for p in pairs], [p[1] if len(p) > 1 else "" for p in pairs],
                             padding=True, truncation=True, max_length=cfg.data.max_length,
                             return_tensors="pt")
                   if cfg.data.text_pair_column else
                   tokenizer(batch, padding=True, truncation=True,
                             max_length=cfg.data.max_length, return_tensors="pt"))
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)
