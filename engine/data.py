"""Reading data files and turning them into padded batches for a text head.

Every failure a user can cause (a missing file, a wrong encoding, a column
that is not there, a label the training split never saw) is a `DataError`
naming the file, row or column and what to do. Imports torch; never textual.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.config import RunConfig
from engine.errors import DataError
from engine.preview import bad_byte

READERS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def read_table(path: Path, *, encoding: str = "utf-8", role: str = "training"):
    """Read a CSV, TSV, JSONL or Parquet file into a pandas DataFrame."""
    import pandas as pd

    if not path.exists():
        raise DataError(f"The {role} file {path} does not exist; check data.{_key(role)}.")
    if path.is_dir():
        raise DataError(f"The {role} path {path} is a folder; give a CSV, TSV, JSONL or Parquet file.")
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            f"Cannot tell the format of {path} from its extension; "
            "use .csv, .tsv, .jsonl or .parquet."
        )
    if path.stat().st_size == 0:
        raise DataError(f"The {role} file {path} is empty.")
    try:
        if kind in ("csv", "tsv"):
            frame = pd.read_csv(
                path, sep="," if kind == "csv" else "\t", encoding=encoding, dtype_backend="numpy_nullable"
            )
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True, encoding=encoding, precise_float=True)
        else:
            frame = pd.read_parquet(path)
    except UnicodeDecodeError:
        raise DataError(
            f"{path} is not valid {encoding} text ({bad_byte(path, encoding)}); set "
            "data.encoding to the file's encoding, e.g. latin-1."
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"The {role} file {path} has no rows.") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path} cannot be parsed as {kind.upper()}: {_first_line(exc)}.") from None
    except ValueError as exc:
        raise DataError(f"{path} cannot be parsed as {kind.upper()}: {_first_line(exc)}.") from None
    except (OSError, ImportError) as exc:
        raise DataError(f"Cannot read {path}: {_first_line(exc)}.") from None
    if len(frame) == 0:
        raise DataError(f"The {role} file {path} has no rows.")
    return frame


def _key(role: str) -> str:
    return "train" if role == "training" else role


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__


@dataclass
class TextExamples:
    """Tokenised examples of one split."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[int] | list[float]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]


@dataclass
class TextData:
    train: TextExamples
    validation: TextExamples
    labels: tuple[str, ...]
    """Label names in class-index order (empty for regression)."""
    majority_class: int | None
    """The most frequent training label: the baseline a classifier must beat."""


def _require_columns(frame, path: Path, columns: dict[str, str | None]) -> None:
    present = [str(c) for c in frame.columns]
    for key, col in columns.items():
        if col is not None and col not in frame.columns:
            raise DataError(
                f"{path} has no column {col!r} (data.{key}); its columns are "
                f"{', '.join(present)}."
            )


def load_text_classification(cfg: RunConfig, tokenizer) -> TextData:
    """Read, split, label-map and tokenise a text (or text-pair) classification set."""
    spec = cfg.data
    regression = cfg.head.task == "regression"
    multi = cfg.head.task == "multi-label-classification"
    columns = {
        "text_column": spec.text_column,
        "text_pair_column": spec.text_pair_column,
        "label_column": spec.label_column,
    }
    if cfg.head.task == "text-pair-classification" and not spec.text_pair_column:
        raise DataError("head.task text-pair-classification needs data.text_pair_column.")
    train_path = cfg.resolve(spec.train)
    train_frame = read_table(train_path, encoding=spec.encoding)
    _require_columns(train_frame, train_path, columns)
    train_frame = _drop_missing_labels(train_frame, train_path, spec.label_column)
    if not (regression or multi):
        _check_label_kinds(train_frame, train_path, spec.label_column)
    if spec.limit is not None and len(train_frame) > spec.limit:
        train_frame = train_frame.sample(n=spec.limit, random_state=cfg.train.seed)

    if spec.validation:
        val_path = cfg.resolve(spec.validation)
        val_frame = read_table(val_path, encoding=spec.encoding, role="validation")
        _require_columns(val_frame, val_path, columns)
        val_frame = _drop_missing_labels(val_frame, val_path, spec.label_column)
        if not (regression or multi):
            _check_label_kinds(val_frame, val_path, spec.label_column)
    else:
        if spec.validation_split <= 0:
            raise DataError("Give data.validation or a data.validation_split above 0.")
        train_frame, val_frame = _split(
            train_frame, spec.label_column, spec.validation_split, cfg.train.seed,
            regression or multi,
        )

    if multi:
        train_sets = [label_set(v) for v in train_frame[spec.label_column]]
        names = tuple(sorted(set().union(*train_sets), key=_natural))
        if len(names) < 2:
            raise DataError(f"{train_path} has fewer than two labels in {spec.label_column!r}; "
                            "multi-label classification needs at least two.")
        val_sets = [label_set(v) for v in val_frame[spec.label_column]]
        unseen = sorted(set().union(*val_sets) - set(names))
        if unseen:
            raise DataError(f"Validation labels {', '.join(unseen)} never appear in the "
                            f"training data ({', '.join(names)}).")
        train_labels = [[float(n in row) for n in names] for row in train_sets]
        val_labels = [[float(n in row) for n in names] for row in val_sets]
        majority = None
    elif regression:
        names: tuple[str, ...] = ()
        train_labels = _as_floats(train_frame[spec.label_column], train_path, spec.label_column)
        val_source = cfg.resolve(spec.validation) if spec.validation else train_path
        val_labels = _as_floats(val_frame[spec.label_column], val_source, spec.label_column)
        majority = None
    else:
        raw_train = [_label_text(v) for v in train_frame[spec.label_column]]
        names = tuple(sorted(set(raw_train), key=_natural))
        if len(names) < 2:
            raise DataError(
                f"{train_path} has only one label ({names[0]!r}) in {spec.label_column!r}; "
                "classification needs at least two."
            )
        index = {n: i for i, n in enumerate(names)}
        train_labels = [index[v] for v in raw_train]
        val_labels = []
        for v in val_frame[spec.label_column]:
            text = _label_text(v)
            if text not in index:
                raise DataError(
                    f"Validation label {text!r} never appears in the training data "
                    f"({', '.join(names)}); fix the label or add training examples of it."
                )
            val_labels.append(index[text])
        counts = torch.bincount(torch.tensor(train_labels), minlength=len(names))
        majority = int(counts.argmax())

    def encode(frame, labels) -> TextExamples:
        texts = [_text(v) for v in frame[spec.text_column]]
        pairs = [_text(v) for v in frame[spec.text_pair_column]] if spec.text_pair_column else None
        enc = tokenizer(
            texts,
            pairs,
            truncation=True,
            max_length=spec.max_length,
            padding=False,
            return_attention_mask=False,
        )
        return TextExamples(enc["input_ids"], enc.get("token_type_ids") if pairs else None, labels)

    return TextData(
        train=encode(train_frame, train_labels),
        validation=encode(val_frame, val_labels),
        labels=names,
        majority_class=majority,
    )


def _drop_missing_labels(frame, path: Path, column: str):
    missing = frame[column].isna()
    if missing.all():
        raise DataError(f"{path} has no values in its label column {column!r}.")
    return frame[~missing]


def _split(frame, label_column: str, fraction: float, seed: int, regression: bool):
    """A seeded split; stratified by label so every class lands in both parts."""
    rng = random.Random(seed)
    if regression:
        idx = list(range(len(frame)))
        rng.shuffle(idx)
        n_val = max(1, round(len(idx) * fraction))
        return frame.iloc[sorted(idx[n_val:])], frame.iloc[sorted(idx[:n_val])]
    by_label: dict[str, list[int]] = {}
    for i, v in enumerate(frame[label_column]):
        by_label.setdefault(_label_text(v), []).append(i)
    train_idx, val_idx = [], []
    for label, rows in sorted(by_label.items()):
        if len(rows) < 2:
            raise DataError(
                f"Label {label!r} has only {len(rows)} example, too few to split off a "
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
        return {_label_text(v) for v in value}
    text = _label_text(value).strip()
    if text.startswith("["):
        import ast

        try:
            return {_label_text(v) for v in ast.literal_eval(text)}
        except (ValueError, SyntaxError):
            pass
    return {part.strip() for part in re.split(r"[|;,]", text) if part.strip()}


def _label_text(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group: int = 50):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group = group
        self.epoch = 0
        self.skip = 0
        """Batches of this epoch to leave out at the next iteration (a resumed run)."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        idx = list(range(len(self.lengths)))
        rng.shuffle(idx)
        mega = self.batch_size * self.group
        out = []
        for start in range(0, len(idx), mega):
            chunk = sorted(idx[start : start + mega], key=lambda i: -self.lengths[i])
            out += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(out)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0
        return iter(self.batches()[skip:])

    def __len__(self) -> int:
        """Batches in a whole epoch (skipping does not change what an epoch is)."""
        return -(-len(self.lengths) // self.batch_size)


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches sorted by length: least padding, order does not matter."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


class Collator:
    """Pads a batch to its own longest sequence (dynamic padding)."""

    def __init__(self, examples: TextExamples, pad_id: int, float_labels: bool) -> None:
        self.examples = examples
        self.pad_id = pad_id
        self.label_dtype = torch.float32 if float_labels else torch.long
    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
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
