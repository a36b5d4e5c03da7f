"""Reading data files and turning them into padded batches for a text head.

Files are read through `datasets` into Arrow (`read_rows`, engine/data/file_rows.py;
the sequence heads through engine/data/text_splits.py), as the preview reads them
too, and label cells are judged by `check_labels`: rows with an
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

import dataclasses
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.core.config import RunConfig, is_hub_data
from engine.core.errors import DataError
from engine.data.examples import (  # noqa: F401  re-exported: the task adapters' names
    TOKENISE_CHUNK,
    PreparationStopped,
    SequenceData,
    SequenceExamples,
    check_stop,
    stoppable,
)
from engine.data.examples import tokenise as _tokenise
from engine.data.labels import _natural, label_set  # noqa: F401  re-exported
from engine.data.reader import (  # noqa: F401  re-exported: the label rules
    _is_missing,
    case_twin,
    check_labels,
    is_missing_label,
    label_text,
)
from engine.data.text_cells import check_text_values

if TYPE_CHECKING:
    import torch


def tokenise(tokenizer, texts: list | None, pairs: list | None = None, *,
             text_target: list | None = None, **kwargs) -> dict[str, list]:
    """engine.data.examples' `tokenise` in chunks of this module's `TOKENISE_CHUNK` rows
    (the task adapters tokenise through here)."""
    return _tokenise(tokenizer, texts, pairs, text_target=text_target, chunk=TOKENISE_CHUNK,
                     **kwargs)


def load_text_classification(cfg: RunConfig, tokenizer, kind: str = "single") -> SequenceData:
    """Read, split, label-map and tokenise a text (or text-pair) classification set from
    local files: through `datasets` into Arrow, then the hub's reading path
    (engine/data/text_splits.py). `kind`: the labels' ('single', 'multi' or 'float'),
    the task adapter's to say (engine.tasks.sequence)."""
    from engine.data.text_splits import load_file_text_classification

    return load_file_text_classification(cfg, tokenizer, kind)


def check_text_classification(cfg: RunConfig, kind: str = "single") -> list[str]:
    """Every check `load_text_classification` makes, without a tokenizer or a model;
    returns its warnings. The CLI runs it before it records a run, so a broken file
    fails in a second instead of after the run's worker process has loaded the model
    (and the worker then reads the file's Arrow table from the cache this filled). A
    hub dataset (`hf:`) is checked by that worker process, which fetches it."""
    if is_hub_data(cfg.data.train):
        return []
    from engine.data.text_splits import file_text_splits

    return list(file_text_splits(cfg, kind).warnings)


def _labelled_splits(cfg: RunConfig, warnings: list[str], kind: str = "single"):
    """For review: ((training rows, None), (validation frame indexed by its rows in the
    file, 0-based; targets), label names, None): the rows a run validated on."""
    from engine.data.hub.splits import encode_labels
    from engine.data.labels import Cells
    from engine.data.text_splits import file_text_splits

    rows = file_text_splits(cfg, kind)
    warnings.extend(rows.warnings)
    frame = rows.validation.to_pandas()
    frame.index = rows.val_rows
    label = rows.columns[2]
    targets = encode_labels(Cells(rows.validation, label).values(), rows.lmap,
                            rows.val_where, label)
    return (rows.train, None), (frame, targets), rows.lmap.names, None


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


def _text(value) -> str:
    """A text cell as text: missing (None, NaN, NA) as ''."""
    return "" if _is_missing(value) else str(value)


def check_text_column(frame, path: Path, column: str, key: str) -> None:
    """A text column that holds text, one per row (not lists), in some row, and not only
    numbers (an id or score column picked by mistake): the rule hub data follows too
    (engine.data.text_cells)."""
    check_text_values(((int(i) + 1, v) for i, v in zip(frame.index, frame[column],
                                                       strict=True)),
                      path, column, key)


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
        return [list(batch) for batch in self._batches()]

    def _batches(self) -> list:
        """The batches as compact int arrays: as Python lists, an epoch of millions of
        rows would hold an int object per row. `random.shuffle` swaps in place, so an
        array is shuffled exactly as a list would be."""
        from array import array

        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        idx = array("q", range(len(self.lengths)))
        rng.shuffle(idx)
        mega = self.size * self.group
        out = []
        for start in range(0, len(idx), mega):
            chunk = sorted(idx[start : start + mega], key=lambda i: -self.lengths[i])
            out += [array("q", chunk[i : i + self.size]) for i in range(0, len(chunk),
                                                                          self.size)]
        rng.shuffle(out)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        return (list(batch) for batch in self._batches())

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

    `read(path, role)` reads one file (default: `read_rows`, through `datasets` into
    Arrow, engine/data/file_rows.py).
    """
    from engine.data.file_rows import read_rows

    spec = cfg.data
    read = read or (lambda path, role: read_rows(path, encoding=spec.encoding, role=role))
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
