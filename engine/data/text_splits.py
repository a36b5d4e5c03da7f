"""Text (and text-pair) classification, multi-label and regression from local files,
read through `datasets` into Arrow and on through the hub's reading path.

A data file becomes a memory-mapped `datasets.Dataset` (engine/data/files.py); its
label cells are judged by the Arrow label rules (engine/data/labels.py: empty ones
left out and counted by row, look-alike labels warned about, one kind of class
label a column); the validation rows are the validation file's or a seeded split
(by class, engine/data/hub/text.py's `stratified_indices`, as for hub data); and the rows
are tokenised in one sequential pass over each file's table
(engine/data/file_tokens.py): a large split into an on-disk Arrow table of token ids,
memory-mapped for training like hub data's, so a file larger than memory trains with
flat memory; a small set (up to `LIST_ROWS` rows) into lists, with no files to write.

Row numbers in messages are 1-based among a file's data rows (header excluded);
`FileTextSplits.val_rows` are 0-based, as review and `data audit` count. Imports
neither torch nor textual.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from engine.core.config import RunConfig
from engine.core.errors import DataError
from engine.data.examples import SequenceData, SequenceExamples, check_stop, tokenise
from engine.data.file_tokens import LIST_ROWS
from engine.data.files import open_file
from engine.data.hub.splits import LabelMap
from engine.data.hub.text import (
    class_indices,
    encode_split,
    row_split_indices,
    stratified_indices,
)
from engine.data.labels import (
    Cells,
    check_class_cells,
    check_numbers,
    check_seen,
    class_names,
    multi_names,
    report_labels,
)
from engine.data.text_cells import check_arrow_text


@dataclass(frozen=True)
class FileTextSplits:
    """A sequence head's rows from files: read, checked, label-mapped, split; not
    tokenised."""

    train: object
    validation: object
    """datasets.Dataset of each part (a selection of the file's rows), in Arrow format."""
    val_rows: object
    """0-based rows of the validation part in its file (numpy ints)."""
    sources: tuple
    """((training file's table, its rows), (validation file's table, its rows)): the
    tables whole, the rows as sorted numpy indices."""
    columns: tuple[str, str | None, str]
    """(text, text pair, label) columns."""
    lmap: LabelMap
    train_where: str
    val_where: str
    warnings: tuple[str, ...]


def file_text_splits(cfg: RunConfig, kind: str = "single") -> FileTextSplits:
    """The rows a run trains and validates on, as its reader and its review both see them.
    `kind`: the labels' (engine.data.hub.splits.label_map), the task adapter's to say.

    Rows are numpy indices into each file's table until the end: a `datasets` selection
    would hand a column over as a Python list of its row numbers."""
    spec = cfg.data
    warnings: list[str] = []
    train_path = cfg.resolve(spec.train)
    full, rows = _read(cfg, train_path, "training", kind, warnings)
    if spec.limit is not None and len(rows) > spec.limit:
        rows = rows[sorted(random.Random(cfg.train.seed).sample(range(len(rows)), spec.limit))]
    check_stop()
    label = spec.label_column
    lmap = None
    if kind == "single":  # a stratified split keeps every class in training: names now
        names, by_value = class_names(full, train_path, label, rows)
        lmap = LabelMap("single", names, by_value)
    if spec.validation:
        val_path = cfg.resolve(spec.validation)
        val_full, val_rows = _read(cfg, val_path, "validation", kind, warnings)
        val_where = str(val_path)
        lmap = _label_map(lmap, full, rows, val_full, val_rows, train_path, label, kind)
    else:
        if spec.validation_split <= 0:
            raise DataError("Give data.validation or a data.validation_split above 0.")
        if lmap is not None:
            parts = stratified_indices(class_indices(Cells(full, label, rows).col, lmap),
                                       lmap.names, spec.validation_split, cfg.train.seed)
        else:
            parts = row_split_indices(len(rows), spec.validation_split, cfg.train.seed)
        rows, val_rows = rows[parts[0]], rows[parts[1]]
        val_full, val_where = full, str(train_path)
        if lmap is None:
            lmap = _label_map(None, full, rows, full, val_rows, train_path, label, kind)
    check_stop()
    return FileTextSplits(_select(full, rows), _select(val_full, val_rows), val_rows,
                          ((full, rows), (val_full, val_rows)), (spec.text_column, spec.text_pair_column, label), lmap,
                          str(train_path), val_where, tuple(warnings))


def _read(cfg: RunConfig, path: Path, role: str, kind: str, warnings: list[str]):
    """(the file's rows, the rows that have a label), every check made: columns, label
    cells (their warnings to `warnings`), text cells."""
    import numpy as np

    spec = cfg.data
    # Arrow format: the label rules and the splits read columns as Arrow, not Python.
    ds = open_file(path, encoding=spec.encoding, role=role).with_format("arrow")
    for key in ("text_column", "text_pair_column", "label_column"):
        name = getattr(spec, key)
        if name is not None and name not in ds.column_names:
            raise DataError(f"{path} has no column {name!r} (data.{key}); its columns are "
                            f"{', '.join(ds.column_names)}.")
    report, missing = report_labels(ds, spec.label_column, multi=kind == "multi")
    if missing.all():
        raise DataError(f"{path} has no values in its label column {spec.label_column!r}.")
    warnings.extend(report.warnings(path.name))
    if kind == "single":
        check_class_cells(ds, path, spec.label_column)
    elif kind == "float":
        check_numbers(ds, path, spec.label_column)
    for key in ("text_column", "text_pair_column"):
        if getattr(spec, key):
            check_arrow_text(ds, str(path), getattr(spec, key), key)
    return ds, np.flatnonzero(~missing)


def _select(ds, rows):
    """`ds`'s `rows` (sorted numpy indices): `ds` itself when they are all of it."""
    import hashlib

    if len(rows) == len(ds):
        return ds
    # Named by the rows' bytes: `datasets` would otherwise pickle the array to hash it.
    files = ",".join(f["filename"] for f in ds.cache_files).encode()
    name = hashlib.sha256(files + rows.tobytes()).hexdigest()[:16]
    return ds.select(rows, new_fingerprint=name)


def _label_map(lmap, train, rows, validation, val_rows, train_path: Path, label: str,
               kind: str) -> LabelMap:
    """How the label cells read as targets: class names from the training rows (`lmap`
    where already known), every validation label among them."""
    if kind == "float":
        return LabelMap("float")
    if kind == "multi":
        names = multi_names(train, train_path, label, rows)
        check_seen(validation, label, names, multi=True, rows=val_rows)
        return LabelMap("multi", names)
    seen = check_seen(validation, label, lmap.names, multi=False, rows=val_rows)
    return LabelMap("single", lmap.names, {**lmap.by_value, **seen})


def load_file_text_classification(cfg: RunConfig, tokenizer, kind: str = "single"
                                  ) -> SequenceData:
    """Read, check, split, label-map and tokenise a local text-classification set."""
    rows = file_text_splits(cfg, kind)
    train, validation = _encode(rows, tokenizer, cfg.data.max_length)
    majority = None
    if rows.lmap.kind == "single":
        counts = Counter(train.labels)
        majority = max(range(len(rows.lmap.names)), key=lambda i: (counts[i], -i))
    return SequenceData(train, validation, rows.lmap.names, majority, rows.warnings)


def _encode(rows: FileTextSplits, tokenizer, max_length: int) -> list:
    """Both parts' examples, read from each file's table in one sequential pass
    (engine/data/file_tokens.py); a table `datasets` holds in memory (a JSON array's)
    is tokenised from its columns."""
    from engine.data.file_tokens import encode_file_rows

    (full, train_rows), (val_full, val_rows) = rows.sources
    wheres = [rows.train_where, rows.val_where]
    if not full.cache_files or not val_full.cache_files:
        return [encode_rows(ds, rows.columns, rows.lmap, where, tokenizer, max_length)
                for ds, where in zip((rows.train, rows.validation), wheres, strict=True)]
    source = Path(full.cache_files[0]["filename"])
    if val_full is full:
        return encode_file_rows(source, [train_rows, val_rows], rows.columns, rows.lmap,
                                wheres, tokenizer, max_length)
    val_source = Path(val_full.cache_files[0]["filename"])
    return [*encode_file_rows(source, [train_rows], rows.columns, rows.lmap, wheres[:1],
                              tokenizer, max_length),
            *encode_file_rows(val_source, [val_rows], rows.columns, rows.lmap, wheres[1:],
                              tokenizer, max_length)]


def encode_rows(ds, columns: tuple[str, str | None, str], lmap: LabelMap, where: str,
                tokenizer, max_length: int):
    """Tokenised examples of a split: lists up to `LIST_ROWS` rows, else the hub's
    batched map into an Arrow table (`ArrowSequenceExamples`)."""
    from engine.data.hub.splits import encode_labels
    from engine.data.hub.text import _as_text

    if len(ds) > LIST_ROWS:
        return encode_split(ds.with_format(None), columns, lmap, where, tokenizer, max_length)
    text, pair, label = columns
    texts = [_as_text(v) for v in Cells(ds, text).values()]
    pairs = [_as_text(v) for v in Cells(ds, pair).values()] if pair else None
    enc = tokenise(tokenizer, texts, pairs, truncation=True, max_length=max_length,
                   padding=False, return_attention_mask=False)
    labels = encode_labels(Cells(ds, label).values(), lmap, where, label)
    return SequenceExamples(enc["input_ids"], enc.get("token_type_ids") if pairs else None,
                            labels)
