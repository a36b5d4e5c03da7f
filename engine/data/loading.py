"""Reading data files and turning them into padded batches for a text head.

Files are read by `engine.data.reader.read_table`, the one reader the preview
uses too, and label cells are judged by its `check_labels`: rows with an
empty label are left out and counted, labels that differ only by spaces
around them are read as one, labels that differ only by case stay separate
classes. Each of these is a warning the run reports (`SequenceData.warnings`),
never a silent change.

Every failure a user can cause (a missing file, a wrong encoding, a column
that is not there, a label the training split never saw) is a `DataError`
naming the file, row or column and what to do. Tokenising goes in chunks
between which a stop request is honoured (`stoppable`). Imports torch;
never textual.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import dataclasses
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.core.config import RunConfig, is_hub_data
from engine.core.errors import DataError
from engine.data.reader import (  # noqa: F401  read_table: the one reader, re-exported
    case_twin,
    check_labels,
    is_missing_label,
    label_text,
    read_table,
)
from engine.data.text_cells import check_text_values, cut_texts

if TYPE_CHECKING:
    import torch


@dataclass
class SequenceExamples:
    """Tokenised examples of one split for the sequence heads (classification, pairs,
    multi-label, regression), as lists; padded into batches by `SequenceCollator`."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[int] | list[float]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]


@dataclass
class SequenceData:
    """A sequence-classification set: both splits' examples and what the labels are."""

    train: SequenceExamples
    validation: SequenceExamples
    labels: tuple[str, ...]
    """Label names in class-index order (empty for regression)."""
    majority_class: int | None
    """The most frequent training label: the baseline a classifier must beat."""
    warnings: tuple[str, ...] = ()
    """Label problems found while reading (left-out rows, look-alike labels)."""


# -- stopping while the data is prepared ----------------------------------------


class PreparationStopped(Exception):
    """The stop request arrived while data was read or tokenised; the run ends as stopped."""


_STOP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "hubtune_stop", default=None)


@contextlib.contextmanager
def stoppable(stop: threading.Event | None) -> Iterator[None]:
    """Within this block `check_stop` (called between tokenising chunks) honours `stop`.

    A context variable, not a parameter: every task adapter's `load_data`
    tokenises through the same helpers without growing a `stop` argument.
    """
    token = _STOP.set(stop)
    try:
        yield
    finally:
        _STOP.reset(token)


def check_stop() -> None:
    stop = _STOP.get()
    if stop is not None and stop.is_set():
        raise PreparationStopped


TOKENISE_CHUNK = 4096
"""Rows tokenised per call: large enough for the fast tokenizer's own threads, small
enough that a stop request waits well under a second."""


def tokenise(tokenizer, texts: list | None, pairs: list | None = None, *,
             text_target: list | None = None, **kwargs) -> dict[str, list]:
    """`tokenizer(texts, pairs, text_target=..., **kwargs)` in chunks, honouring a stop
    request between them; returns the list-valued fields (input_ids, labels, ...)."""
    rows = len(texts) if texts is not None else len(text_target or [])
    # A cell far longer than max_length tokens need is cut first (engine.data.text_cells):
    # the tokenizer builds every token before truncating.
    limit = kwargs.get("max_length") if kwargs.get("truncation") else None
    out: dict[str, list] = {}
    for start in range(0, max(1, rows), TOKENISE_CHUNK):
        check_stop()
        cut = slice(start, start + TOKENISE_CHUNK)
        if text_target is not None:
            kwargs["text_target"] = cut_texts(text_target[cut], limit)
        enc = tokenizer(cut_texts(texts[cut], limit) if texts is not None else None,
                        cut_texts(pairs[cut], limit) if pairs is not None else None, **kwargs)
        for key, value in enc.items():
            out.setdefault(key, []).extend(value)
    check_stop()
    return out


def _require_columns(frame, path: Path, columns: dict[str, str | None]) -> None:
    present = [str(c) for c in frame.columns]
    for key, col in columns.items():
        if col is not None and col not in frame.columns:
            raise DataError(
                f"{path} has no column {col!r} (data.{key}); its columns are "
                f"{', '.join(present)}."
            )


def load_text_classification(cfg: RunConfig, tokenizer) -> SequenceData:
    """Read, split, label-map and tokenise a text (or text-pair) classification set."""
    warnings: list[str] = []
    (train_frame, train_labels), (val_frame, val_labels), names, majority = \
        _labelled_splits(cfg, warnings)
    return SequenceData(
        train=_encode_texts(train_frame, train_labels, cfg.data, tokenizer),
        validation=_encode_texts(val_frame, val_labels, cfg.data, tokenizer),
        labels=names,
        majority_class=majority,
        warnings=tuple(warnings),
    )


TEXT_CLASSIFICATION_TASKS = ("text-classification", "text-pair-classification",
                             "multi-label-classification", "regression")
"""The tasks `load_text_classification` reads (and `check_text_classification` checks)."""


def check_text_classification(cfg: RunConfig) -> list[str]:
    """Every check `load_text_classification` makes, without a tokenizer or a model;
    returns its warnings. The CLI runs it before it records a run, so a broken file
    fails in a second instead of after the run's worker process has loaded the model. A
    hub dataset (`hf:`) is checked by that worker process, which fetches it."""
    if is_hub_data(cfg.data.train):
        return []
    warnings: list[str] = []
    _labelled_splits(cfg, warnings)
    return warnings


def _labelled_splits(cfg: RunConfig, warnings: list[str]):
    """((train frame, labels), (validation frame, labels), label names, majority class)."""
    spec, task = cfg.data, cfg.head.task
    if task == "text-pair-classification" and not spec.text_pair_column:
        raise DataError("head.task text-pair-classification needs data.text_pair_column.")
    train_frame, val_frame = _read_splits(cfg, warnings)
    train_path = cfg.resolve(spec.train)
    majority = None
    if task == "multi-label-classification":
        names, train_labels, val_labels = _multi_hot_labels(train_frame, val_frame, train_path,
                                                             spec.label_column)
    elif task == "regression":
        names = ()
        train_labels = _as_floats(train_frame[spec.label_column], train_path, spec.label_column)
        val_source = cfg.resolve(spec.validation) if spec.validation else train_path
        val_labels = _as_floats(val_frame[spec.label_column], val_source, spec.label_column)
    else:
        names, train_labels, val_labels = _class_labels(train_frame, val_frame, train_path,
                                                        spec.label_column)
        counts = collections.Counter(train_labels)
        majority = max(range(len(names)), key=lambda i: (counts[i], -i))  # ties: lowest index
    return (train_frame, train_labels), (val_frame, val_labels), names, majority


def _read_splits(cfg: RunConfig, warnings: list[str]):
    """The training and validation frames: read, checked, cleaned of empty labels, and
    split (seeded, stratified for classes) when no validation file is given."""
    spec = cfg.data
    classes = cfg.head.task not in ("regression", "multi-label-classification")
    multi = cfg.head.task == "multi-label-classification"
    columns = {"text_column": spec.text_column, "text_pair_column": spec.text_pair_column,
               "label_column": spec.label_column}
    train_path = cfg.resolve(spec.train)
    train_frame = read_table(train_path, encoding=spec.encoding)
    _require_columns(train_frame, train_path, columns)
    train_frame = drop_missing_labels(train_frame, train_path, spec.label_column,
                                       warnings, multi)
    if classes:
        _check_class_labels(train_frame, train_path, spec.label_column)
    check_text_column(train_frame, train_path, spec.text_column, "text_column")
    if spec.text_pair_column:
        check_text_column(train_frame, train_path, spec.text_pair_column, "text_pair_column")
    if spec.limit is not None and len(train_frame) > spec.limit:
        train_frame = train_frame.sample(n=spec.limit, random_state=cfg.train.seed)
    check_stop()
    if spec.validation:
        val_path = cfg.resolve(spec.validation)
        val_frame = read_table(val_path, encoding=spec.encoding, role="validation")
        _require_columns(val_frame, val_path, columns)
        val_frame = drop_missing_labels(val_frame, val_path, spec.label_column,
                                         warnings, multi)
        if classes:
            _check_class_labels(val_frame, val_path, spec.label_column)
        for column, key in ((spec.text_column, "text_column"),
                            (spec.text_pair_column, "text_pair_column")):
            if column:
                check_text_column(val_frame, val_path, column, key)
        check_stop()
        return train_frame, val_frame
    if spec.validation_split <= 0:
        raise DataError("Give data.validation or a data.validation_split above 0.")
    return _split(train_frame, spec.label_column, spec.validation_split, cfg.train.seed,
                  not classes)


def _multi_hot_labels(train_frame, val_frame, train_path: Path, column: str):
    """(label names, multi-hot train labels, multi-hot validation labels)."""
    train_sets = [label_set(v) for v in train_frame[column]]
    names = tuple(sorted(set().union(*train_sets), key=_natural))
    if len(names) < 2:
        raise DataError(f"{train_path} has fewer than two labels in {column!r}; "
                        "multi-label classification needs at least two.")
    val_sets = [label_set(v) for v in val_frame[column]]
    unseen = sorted(set().union(*val_sets) - set(names))
    if unseen:
        raise DataError(f"Validation labels {', '.join(unseen)} never appear in the "
                        f"training data ({', '.join(names)}){_twin_hint(unseen, names)}.")
    return (names, [[float(n in row) for n in names] for row in train_sets],
            [[float(n in row) for n in names] for row in val_sets])


def _class_labels(train_frame, val_frame, train_path: Path, column: str):
    """(class names in natural order, train class indices, validation class indices)."""
    raw_train = [label_text(v) for v in train_frame[column]]
    names = tuple(sorted(set(raw_train), key=_natural))
    if len(names) < 2:
        raise DataError(f"{train_path} has only one label ({names[0]!r}) in {column!r}; "
                        "classification needs at least two.")
    index = {n: i for i, n in enumerate(names)}
    val_labels = []
    for v in val_frame[column]:
        text = label_text(v)
        if text not in index:
            raise DataError(
                f"Validation label {text!r} never appears in the training data "
                f"({', '.join(names)}){_twin_hint([text], names)}; fix the label or add "
                "training examples of it."
            )
        val_labels.append(index[text])
    return names, [index[v] for v in raw_train], val_labels


def _encode_texts(frame, labels, spec, tokenizer) -> SequenceExamples:
    texts = [_text(v) for v in frame[spec.text_column]]
    pairs = [_text(v) for v in frame[spec.text_pair_column]] if spec.text_pair_column else None
    enc = tokenise(tokenizer, texts, pairs, truncation=True, max_length=spec.max_length,
                   padding=False, return_attention_mask=False)
    return SequenceExamples(enc["input_ids"], enc.get("token_type_ids") if pairs else None,
                            labels)


def drop_missing_labels(frame, path: Path, column: str, warnings: list[str],
                        multi: bool = False, *, classes: bool = True):
    """Leave out rows with an empty label cell; what `check_labels` finds goes to `warnings`.

    Called on a file's whole table, before any sample or split, so the row
    numbers in a warning are the file's. Look-alike labels are reported only
    where labels are `classes` (not seq2seq targets, which are text).
    """
    values = list(frame[column])
    report = check_labels(values, column, names=_multi_names if multi else None)
    if len(report.missing_rows) == len(values):
        raise DataError(f"{path} has no values in its label column {column!r}.")
    if not classes:
        report = dataclasses.replace(report, spaced=(), case_variants=())
    warnings.extend(report.warnings(path.name))
    if not report.missing_rows:
        return frame
    return frame[[not is_missing_label(v) for v in values]]


def _multi_names(value) -> list[str]:
    """The label names of a multi-label cell, before spaces are trimmed."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple, set)):
        return [str(v) for v in value]
    return sorted(label_set(value))


def _twin_hint(labels, names) -> str:
    """" (the training data has 'positive', ...)" when a label differs only by case from
    one of `names`; else ''."""
    for label in labels:
        twin = case_twin(label, names)
        if twin is not None:
            return f" (the training data has {twin!r}, which differs only by case)"
    return ""


def _split(frame, label_column: str, fraction: float, seed: int, regression: bool):
    """A seeded split; stratified by label so every class lands in both parts."""
    rng = random.Random(seed)
    rows = len(frame)
    if rows < 2 and regression:
        raise DataError(f"The training data has only {rows} row; a validation split needs two "
                        "or more, or give data.validation.")
    # Each class keeps one training example, but a split that would take every row is a
    # slip (0.99 for 0.099, or the share meant for training).
    if rows >= 2 and max(1, round(rows * fraction)) >= rows:
        raise DataError(
            f"data.validation_split {fraction:g} of {rows} rows leaves none to train on; "
            "hold out less (0.1 to 0.2 is usual) or give data.validation."
        )
    if regression:
        idx = list(range(len(frame)))
        rng.shuffle(idx)
        n_val = max(1, round(len(idx) * fraction))
        return frame.iloc[sorted(idx[n_val:])], frame.iloc[sorted(idx[:n_val])]
    by_label: dict[str, list[int]] = {}
    for i, v in enumerate(frame[label_column]):
        by_label.setdefault(label_text(v), []).append(i)
    train_idx, val_idx = [], []
    for label, rows in sorted(by_label.items()):
        if len(rows) < 2:
            twin = case_twin(label, by_label)
            hint = f" (it differs only by case from {twin!r})" if twin else ""
            raise DataError(
                f"Label {label!r} has only {len(rows)} example{hint}, too few to split off a "
                "validation set; add examples or give data.validation."
            )
        rng.shuffle(rows)
        n_val = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
        val_idx += rows[:n_val]
        train_idx += rows[n_val:]
    return frame.iloc[sorted(train_idx)], frame.iloc[sorted(val_idx)]


def label_set(value) -> set[str]:
    """The labels of a multi-label cell: a list, or text split on | ; or ,."""
    import re

    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple, set)):
        return {label_text(v) for v in value}
    text = label_text(value)
    if text.startswith("["):
        import ast

        try:
            return {label_text(v) for v in ast.literal_eval(text)}
        except (ValueError, SyntaxError):
            pass
    return {part.strip() for part in re.split(r"[|;,]", text) if part.strip()}


def _natural(name: str):
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


def _text(value) -> str:
    import pandas as pd

    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def _is_number(value) -> bool:
    """A number, or text that reads as one ('3', '0.5'): what a numeric label looks like."""
    import numbers

    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _check_label_kinds(frame, path: Path, column: str) -> None:
    """Class labels must be all names or all numbers: a mix is nearly always a broken row."""
    first: dict[bool, tuple[int, object]] = {}
    for row, value in zip(frame.index, frame[column], strict=True):
        first.setdefault(_is_number(value), (int(row), value))
        if len(first) == 2:
            (n_row, n_val), (t_row, t_val) = first[True], first[False]
            raise DataError(
                f"{path} mixes numbers and names in its label column {column!r} (row "
                f"{n_row + 1} has {n_val!r}, row {t_row + 1} has {t_val!r}); use one kind "
                "of label for every row."
            )


def _check_class_labels(frame, path: Path, column: str) -> None:
    """Class labels that are names or whole numbers, one kind in a column."""
    values = list(frame[column])
    for row, value in zip(frame.index, values, strict=True):
        if hasattr(value, "tolist") and not isinstance(value, str):
            value = value.tolist()
        if isinstance(value, (list, tuple, dict, set)):
            raise DataError(
                f"{path} holds a list in its label column {column!r} (row {int(row) + 1} has "
                f"{_short(value)}); for several labels per row use head.task "
                "multi-label-classification."
            )
    _check_label_kinds(frame, path, column)
    decimals = [(row, v) for row, v in zip(frame.index, values, strict=True)
                if _is_number(v) and not float(v).is_integer()]
    distinct = len({label_text(v) for v in values})
    # A few decimal classes (star ratings 0.5 to 5) are classes; a value per row is a score.
    if decimals and distinct > len(values) / 2:
        row, value = decimals[0]
        raise DataError(
            f"{path} holds decimal numbers in its label column {column!r} (row {int(row) + 1} "
            f"has {_plain(value)!r}; {distinct} different values in {len(values)} rows): scores, not "
            "classes; use head.task regression to predict a number, or give each row a class."
        )


def _plain(value):
    """A numpy scalar as the Python number it holds, so a message shows 0.5, not
    np.float64(0.5)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_text_column(frame, path: Path, column: str, key: str) -> None:
    """A text column that holds text, one per row (not lists), in some row, and not only
    numbers (an id or score column picked by mistake): the rule hub data follows too
    (engine.data.text_cells)."""
    check_text_values(((int(i) + 1, v) for i, v in zip(frame.index, frame[column],
                                                       strict=True)),
                      path, column, key)


def _as_floats(series, path: Path, column: str) -> list[float]:
    for row, value in zip(series.index, series, strict=True):
        if not _is_number(value):
            raise DataError(
                f"Regression needs numbers in {column!r} of {path}, but row {int(row) + 1} "
                f"holds {value!r}; fix that row or pick the right label column."
            )
    return [float(v) for v in series]


# -- batching -------------------------------------------------------------


class LengthGroupedBatches:
    """Batches of similar length, in a seeded random order that changes per epoch.

    Shuffle, cut into mega-batches of `group` batches, sort each by length and
    cut it into batches: padding waste falls sharply while the order stays
    random. `set_epoch` makes the order a pure function of (seed, epoch), which
    is what lets a resumed run see the same batches.

    The batch size is `size`, not `batch_size`, on purpose: accelerate's data-parallel
    sharding treats a sampler with a `batch_size` as one of equal batches, and silently
    drops each group of batches that ends in a short one (the epoch's last, anywhere
    once shuffled). Without it every batch is dealt out and the epoch padded evenly.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group: int = 50):
        self.lengths = list(lengths)
        self.size = batch_size
        self.seed = seed
        self.group = group
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        idx = list(range(len(self.lengths)))
        rng.shuffle(idx)
        mega = self.size * self.group
        out = []
        for start in range(0, len(idx), mega):
            chunk = sorted(idx[start : start + mega], key=lambda i: -self.lengths[i])
            out += [chunk[i : i + self.size] for i in range(0, len(chunk), self.size)]
        rng.shuffle(out)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.size)


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches sorted by length: least padding, order does not matter."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class SequenceCollator:
    """Pads a batch of `SequenceExamples` (or `ArrowSequenceExamples`) to its own longest
    sequence (dynamic padding), with the labels as class indices or floats."""

    def __init__(self, examples: SequenceExamples, pad_id: int, float_labels: bool) -> None:
        self.examples = examples
        self.pad_id = pad_id
        import torch  # here, not at the top: reading and checking data needs no torch

        self.label_dtype = torch.float32 if float_labels else torch.long

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        import torch

        ex = self.examples
        seqs = [ex.input_ids[i] for i in indices]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, : len(s)] = torch.tensor(s)
            mask[row, : len(s)] = 1
        batch = {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": torch.tensor([ex.labels[i] for i in indices], dtype=self.label_dtype),
        }
        if ex.token_type_ids is not None:
            types = torch.zeros((len(seqs), width), dtype=torch.long)
            for row, i in enumerate(indices):
                t = ex.token_type_ids[i]
                types[row, : len(t)] = torch.tensor(t)
            batch["token_type_ids"] = types
        return batch


# -- shared by the other text tasks -----------------------------------------


def pick_column(frame, path: Path, wanted: str, key: str, fallbacks: tuple[str, ...]) -> str:
    """The column to read: the configured one, else a conventional name for this task.

    A fallback applies only while the key is left at its default, so an
    explicit mapping is never second-guessed.
    """
    if wanted in frame.columns:
        return wanted
    for name in fallbacks:
        if name in frame.columns:
            return name
    present = ", ".join(str(c) for c in frame.columns)
    raise DataError(
        f"{path} has no column {wanted!r} (data.{key}); its columns are {present}. "
        f"Set data.{key} to the right one."
    )


def load_frames(cfg: RunConfig, read=None):
    """The training and validation tables: the validation file, or a seeded random split.

    `read(path, role)` reads one file (default: `read_table`).
    """
    spec = cfg.data
    read = read or (lambda path, role: read_table(path, encoding=spec.encoding, role=role))
    train_path = cfg.resolve(spec.train)
    train = read(train_path, "training")
    if spec.limit is not None and len(train) > spec.limit:
        train = train.sample(n=spec.limit, random_state=cfg.train.seed)
    if spec.validation:
        val_path = cfg.resolve(spec.validation)
        return train, read(val_path, "validation"), train_path
    if spec.validation_split <= 0:
        raise DataError("Give data.validation or a data.validation_split above 0.")
    if len(train) < 2:
        raise DataError(f"{train_path} has only {len(train)} row; a validation split needs two "
                        "or more, or give data.validation.")
    train, val = _split(train, "", spec.validation_split, cfg.train.seed, regression=True)
    return train, val, train_path


def as_list(value, path: Path, column: str, row: int) -> list:
    """A list cell (JSONL arrays, or a Python-looking list in CSV)."""
    import ast

    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            value = value.split()
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{path} row {row + 1}: column {column!r} must hold a list, "
                        f"got {type(value).__name__}.")
    return list(value)
