"""Text (and text-pair) classification and regression on hub dataset splits.

The hub counterpart of `load_text_classification` (engine/data/loading.py):
the same label rules and messages, but the rows stay in Arrow tables. The
splits come in as local files (engine/data/hub/fetch.py fetched them); the
result is a `SequenceData` whose examples are `ArrowSequenceExamples`, which the
`SequenceCollator`, length-grouped batches and evaluation read like `SequenceExamples`.
Tokenising is one batched `datasets` map per split, written to the
`datasets` cache beside the split's table. Imports neither torch nor textual.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.core.config import RunConfig
from engine.core.errors import DataError
from engine.data.examples import SequenceData, check_stop
from engine.data.hub.splits import (
    MAP_BATCH_ROWS,
    LabelMap,
    checked_labels,
    encode_labels,
    open_split,
    require_column,
    stream_split,
    text_columns,
)
from engine.data.text_cells import cut_texts


@dataclass(frozen=True)
class HubSplit:
    """One split's local files and how messages name it."""

    paths: tuple[Path, ...]
    where: str
    """hf:OWNER/NAME (subset S, split T)."""
    stream_rows: int | None = None
    """Streaming: read only this many rows, fetching `paths` (repo paths) one at a time
    with `fetch`; None reads the local files whole."""
    fetch: Callable[[Path], Path] | None = None
    stream_name: str = ""
    """Names the streamed rows' file in the cache (a re-run reads it again)."""

    def open(self, *, limit: int | None = None, seed: int = 0):
        """The split's rows for training or validation: a split of none is a sentence here,
        whatever the task (a preview still shows it, empty)."""
        if self.stream_rows is None:
            ds = open_split(self.paths, self.where, limit=limit, seed=seed)
            if len(ds) == 0:
                raise DataError(f"{self.where} has no rows; pick a split that holds data.")
            return ds
        rows = min(self.stream_rows, limit) if limit is not None else self.stream_rows
        return stream_split(self.paths, self.fetch, rows, self.where, seed=seed,
                            name=f"{self.stream_name}-{rows}-{seed}")


class ArrowColumn(Sequence):
    """A list-valued Arrow column read one row at a time (a row is a list of ints)."""

    def __init__(self, ds, name: str) -> None:
        self.ds, self.name = ds, name
        self._chunks = None

    def _load(self):
        column = self.ds.data.column(self.name)
        self._chunks = column.chunks
        self._starts, total = [], 0
        for chunk in self._chunks:
            self._starts.append(total)
            total += len(chunk)
        return self._chunks

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        chunks = self._chunks if self._chunks is not None else self._load()
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        k = bisect.bisect_right(self._starts, i) - 1
        return chunks[k][i - self._starts[k]].values.to_numpy(zero_copy_only=False).tolist()

    def __getstate__(self):  # the chunks are views of the table: rebuilt after unpickling
        return {"ds": self.ds, "name": self.name}

    def __setstate__(self, state) -> None:
        self.ds, self.name, self._chunks = state["ds"], state["name"], None


class ArrowSequenceExamples:
    """Tokenised examples of one split in an Arrow table (memory-mapped from disk when
    the split's table is): what `SequenceExamples` holds as lists."""

    def __init__(self, ds) -> None:
        import pyarrow.compute as pc

        self.ds = ds
        self.input_ids = ArrowColumn(ds, "input_ids")
        self.token_type_ids = (ArrowColumn(ds, "token_type_ids")
                               if "token_type_ids" in ds.column_names else None)
        self.labels = ds.data.column("labels").to_pylist()
        self.lengths = pc.list_value_length(ds.data.column("input_ids")).to_pylist()

    def __len__(self) -> int:
        return len(self.lengths)


@dataclass(frozen=True)
class HubTextSplits:
    """A sequence head's hub rows, read and label-mapped, validation chosen; not tokenised."""

    train: object
    validation: object
    """datasets.Dataset (memory-mapped) of each part."""
    columns: tuple[str, str | None, str]
    """(text, text pair, label) columns."""
    lmap: LabelMap
    val_where: str
    notes: list[str]
    warnings: tuple[str, ...]


def hub_text_splits(cfg: RunConfig, train: HubSplit, validation: HubSplit | None, *,
                    kind: str = "single") -> HubTextSplits:
    """Read, label-map and split (when there is no validation split): the rows a run trains
    and validates on, as its reader and its review both see them. `kind`: the labels'
    (engine.data.hub.splits.label_map), the task adapter's to say."""
    spec = cfg.data
    train_ds = train.open(limit=spec.limit, seed=cfg.train.seed)
    text, pair, label, notes = text_columns(train_ds, train.where, spec)
    _check_text(train_ds, train.where, text, "text_column")
    if pair is not None:
        _check_text(train_ds, train.where, pair, "text_pair_column")
    train_ds, lmap, warnings = checked_labels(train_ds, train.where, label, kind)
    check_stop()
    if validation is not None:
        val_ds = validation.open(seed=cfg.train.seed)
        for column, key in ((text, "text_column"), (pair, "text_pair_column"),
                            (label, "label_column")):
            if column is not None:
                require_column(val_ds, validation.where, column, key)
                if key != "label_column":
                    _check_text(val_ds, validation.where, column, key)
        val_ds, lmap, more = checked_labels(val_ds, validation.where, label, kind, lmap)
        warnings += more
        val_where = validation.where
    else:
        if spec.validation_split <= 0:
            raise DataError("Give data.validation or a data.validation_split above 0.")
        train_ds, val_ds = split_off(train_ds, label, lmap, spec.validation_split,
                                     cfg.train.seed)
        val_where = train.where
        notes.append(f"Validating on {len(val_ds):,} rows split off {train.where} "
                     f"(data.validation_split {spec.validation_split:g}, seed "
                     f"{cfg.train.seed})")
    return HubTextSplits(train_ds, val_ds, (text, pair, label), lmap, val_where, notes,
                         tuple(warnings))


def load_hub_text_classification(cfg: RunConfig, tokenizer, train: HubSplit,
                                 validation: HubSplit | None, *, kind: str = "single"
                                 ) -> tuple[SequenceData, list[str]]:
    """Read, label-map, split (when there is no validation split) and tokenise; returns
    the data and notes for the run's events (columns read in place of absent ones, where
    validation came from)."""
    rows = hub_text_splits(cfg, train, validation, kind=kind)
    lmap, max_length = rows.lmap, cfg.data.max_length
    train_ex = encode_split(rows.train, rows.columns, lmap, train.where, tokenizer, max_length)
    val_ex = encode_split(rows.validation, rows.columns, lmap, rows.val_where, tokenizer,
                          max_length)
    majority = None
    if lmap.kind == "single":
        counts = Counter(train_ex.labels)
        majority = max(range(len(lmap.names)), key=lambda i: (counts[i], -i))
    return SequenceData(train_ex, val_ex, lmap.names, majority, rows.warnings), rows.notes


def _check_text(ds, where: str, column: str, key: str) -> None:
    # The rule files follow too (no lists, not all empty, not only numbers).
    from engine.data.text_cells import check_arrow_text

    check_arrow_text(ds, where, column, key)


def split_off(ds, column: str, lmap: LabelMap, fraction: float, seed: int):
    """A seeded validation split of `ds` (by class, so every class lands in both parts,
    as for files); indices only: no row is copied."""
    train_idx, val_idx = split_indices(ds, column, lmap, fraction, seed)
    return ds.select(train_idx), ds.select(val_idx)


def split_indices(ds, column: str, lmap: LabelMap, fraction: float, seed: int):
    """(training rows, validation rows) of `split_off`, as sorted numpy indices."""
    if lmap.kind != "single":
        return row_split_indices(len(ds), fraction, seed)
    return stratified_indices(class_indices(ds.with_format("arrow")[column], lmap),
                              lmap.names, fraction, seed)


def stratified_indices(classes, names: tuple[str, ...], fraction: float, seed: int):
    """(training rows, validation rows), sorted numpy indices, of rows whose class indices
    are `classes`: a seeded share of each class validates, at least one row each side."""
    import numpy as np

    from engine.data.reader import case_twin

    _check_fraction(len(classes), fraction)
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        if len(members) < 2:
            twin = case_twin(names[c], names)
            hint = f" (it differs only by case from {twin!r})" if twin else ""
            raise DataError(f"Label {names[c]!r} has only 1 example{hint}, too few to "
                            "split off a validation set; add examples or give "
                            "data.validation.")
        rng.shuffle(members)
        n_val = min(len(members) - 1, max(1, round(len(members) * fraction)))
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def split_rows(ds, fraction: float, seed: int):
    """A seeded random validation split of `ds` (indices only: no row is copied)."""
    train_idx, val_idx = row_split_indices(len(ds), fraction, seed)
    return ds.select(train_idx), ds.select(val_idx)


def row_split_indices(rows: int, fraction: float, seed: int):
    """(training rows, validation rows) of `split_rows`, as sorted numpy indices."""
    import numpy as np

    _check_fraction(rows, fraction)
    order = np.random.default_rng(seed).permutation(rows)
    n_val = max(1, round(rows * fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _check_fraction(rows: int, fraction: float) -> None:
    if rows < 2:
        raise DataError(f"The training data has only {rows} row; a validation split needs "
                        "two or more, or give data.validation.")
    if max(1, round(rows * fraction)) >= rows:
        raise DataError(f"data.validation_split {fraction:g} of {rows} rows leaves none to "
                        "train on; hold out less (0.1 to 0.2 is usual) or give "
                        "data.validation.")


def class_indices(col, lmap: LabelMap):
    """Each cell's class index (a label column as Arrow) as a numpy array, computed by
    Arrow (no Python objects)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if lmap.native:
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)
    values = list(lmap.by_value)
    positions = pc.index_in(col, value_set=pa.array(values)).to_numpy(zero_copy_only=False)
    lookup = np.array([lmap.by_value[v] for v in values], dtype=np.int64)
    return lookup[positions.astype(np.int64)]


def encode_split(ds, columns: tuple[str, str | None, str], lmap: LabelMap, where: str,
                 tokenizer, max_length: int) -> ArrowSequenceExamples:
    """Tokenise a split by a batched map; the result is an Arrow table of input_ids
    (token_type_ids for pairs) and labels, on disk when the split is."""
    text, pair, label = columns

    def encode(batch: dict) -> dict:
        check_stop()
        texts = cut_texts([_as_text(v) for v in batch[text]], max_length)
        pairs = cut_texts([_as_text(v) for v in batch[pair]], max_length) if pair else None
        enc = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False,
                        return_attention_mask=False)
        out = {"input_ids": enc["input_ids"],
               "labels": encode_labels(batch[label], lmap, where, label)}
        if pair and "token_type_ids" in enc:
            out["token_type_ids"] = enc["token_type_ids"]
        return out

    mapped = ds.map(encode, batched=True, batch_size=MAP_BATCH_ROWS,
                    remove_columns=list(ds.column_names))
    return ArrowSequenceExamples(mapped)


def _as_text(value) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)
