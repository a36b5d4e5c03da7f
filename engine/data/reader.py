"""A quick look at a data file before training: columns, first rows, labels.

The preview reads a file as a run does, through the one reader (`read_rows`,
engine/data/file_rows.py, over engine/data/files.py's Arrow table), so it shows the
columns, rows and labels a run will use: the same encoding (a UTF-8 byte-order mark
is dropped, never left in the first column's name), the same delimiter, header names
trimmed of surrounding spaces, the same missing-value rules and messages. That reader
never imports `datasets` (whose fingerprint hashing would import transformers and
torch on the preview's thread while the engine thread may be importing them).
`check_labels` is the one judge of label cells: empty ones
(blank, whitespace, NA/NaN) are left out of training and counted, labels that
differ only by surrounding spaces are read as one (spaces around a name are
never meant), and labels that differ only by case are kept as separate classes
but warned about (merging them would rewrite the data on a guess; the user
decides). Both the preview and the run report these warnings.

Torch-free (pyarrow only), so the TUI can call it from a thread as a path is typed.
Problems are `DataError`s naming the file and what to do.
"""

from __future__ import annotations

import codecs
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.core.errors import DataError
from engine.data.formats import (  # noqa: F401  re-exported: the readers' shared rules
    CONLL_SUFFIXES,
    DELIMITERS,
    READERS,
    _column_names,
    _delimiter,
    _first_line,
    _key,
    _read_json_array,
    _starts_with,
    bad_byte,
    conll_sentences,
    file_kind,
    text_encoding,
)

TEXT_NAMES = ("text", "sentence", "review", "content", "tweet", "document", "body", "question",
              "tokens", "words", "source", "path", "image")
LABEL_NAMES = ("label", "labels", "sentiment", "category", "class", "target", "y", "tags",
               "ner_tags", "summary")


@dataclass(frozen=True)
class DataPreview:
    path: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    """The first few rows, as text."""
    total_rows: int
    label_counts: tuple[tuple[str, int], ...]
    """Label -> count over the whole file, most frequent first (for the guessed label column)."""
    text_column: str | None
    label_column: str | None
    warnings: tuple[str, ...] = ()
    """Problems a run would meet in the label column (what `check_labels` reports)."""


def preview_file(path: Path, *, encoding: str = "utf-8", label_column: str | None = None,
                 text_column: str | None = None, limit: int = 5) -> DataPreview:
    from engine.data.file_rows import read_rows

    if path.is_dir():
        return _preview_folder(path, limit)
    rows = read_rows(path, encoding=encoding, role="data", conll=True)
    columns = rows.columns
    text_column = text_column if text_column in columns else _guess(columns, TEXT_NAMES)
    label_column = label_column if label_column in columns else _guess(columns, LABEL_NAMES)
    counts: Counter[str] = Counter()
    warnings: tuple[str, ...] = ()
    if label_column is not None:
        values = rows[label_column]
        counts.update(label_text(v) if _is_scalar(v) else cell_text(v)
                      for v in values if not is_missing_label(v))
        warnings = check_labels(values, label_column).warnings(path.name)
    head = rows.head(limit)
    return DataPreview(
        path=str(path), columns=tuple(columns),
        rows=tuple(tuple(cell_text(v) for v in row)
                   for row in zip(*(head[c] for c in columns), strict=True)),
        total_rows=len(rows), label_counts=tuple(counts.most_common()),
        text_column=text_column, label_column=label_column, warnings=warnings,
    )


def read_columns(path: Path, columns: list[str], *, encoding: str = "utf-8") -> list[list[str]]:
    """Every row's values of `columns`, as text (list cells joined by spaces)."""
    from engine.data.file_rows import read_rows

    if path.is_dir():
        raise DataError(f"{path} is a folder of images; it has no text to count tokens of.")
    rows = read_rows(path, encoding=encoding, role="data", conll=True)
    for column in columns:
        if column not in rows.columns:
            raise DataError(f"{path.name} has no column {column!r}; its columns are "
                            f"{', '.join(rows.columns)}.")
    return [[_as_text(v) for v in row] for row in zip(*(rows[c] for c in columns),
                                                      strict=True)]


def _as_text(value) -> str:
    """A cell as the words it holds: a list cell (the tokens of a token-classification
    row, or its JSON text in a CSV) joined by spaces."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str) and value.startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return cell_text(value)


# -- a new file's encoding (`hubtune predict --file`) ------------------------------

BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))
"""Byte-order marks that name a text file's encoding (UTF-32's first: it starts like
UTF-16's)."""


def new_file_encoding(path: Path, *, given: str | None, usual: str) -> tuple[str, str | None]:
    """(encoding, note) to read a new text file with, one the user did not describe in a
    config (`hubtune predict --file`): `given` if any; else the one its byte-order mark
    names; else UTF-8 if every byte decodes as UTF-8; else `usual` (the run's
    data.encoding) if that is not UTF-8, with a note saying so, since a guess must not be
    silent. A file none of these read is a DataError asking for `--encoding`."""
    if given is not None:
        text_encoding(given)  # an unknown name is one sentence
        return given, None
    if path.is_dir() or path.suffix.lower() == ".parquet" or not path.is_file():
        return usual, None  # not text (or not there: the reader says so)
    with open(path, "rb") as fh:
        head = fh.read(4)
    for bom, name in BOMS:
        if head.startswith(bom):
            return name, None
    if _decodes(path, "utf-8"):
        return "utf-8", None
    where = bad_byte(path, "utf-8")
    if codecs.lookup(usual).name != "utf-8" and _decodes(path, usual):
        return usual, (f"{path.name} is not UTF-8 text ({where}); read it as {usual}, the "
                       "encoding of the run's data (pass --encoding to choose another).")
    raise DataError(f"{path} is not UTF-8 text ({where}); pass --encoding with the file's "
                    "encoding, e.g. --encoding latin-1.")


def _decodes(path: Path, encoding: str) -> bool:
    """Whether the whole file decodes in `encoding`, read a block at a time."""
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def cell_text(value) -> str:
    """A cell as the preview shows it: missing as '', lists and mappings as JSON."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    if _is_missing(value):
        return ""
    return str(value)


# -- labels -------------------------------------------------------------------


def _is_scalar(value) -> bool:
    return not isinstance(value, (list, tuple, dict, set)) and not (
        hasattr(value, "tolist") and not isinstance(value, str) and getattr(value, "ndim", 0))


def _is_missing(value) -> bool:
    """None, NaN or pandas' NA (an empty cell, or NA / null / NaN in a CSV)."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    return isinstance(value, float) and math.isnan(value)


def is_missing_label(value) -> bool:
    """An empty label cell: missing (blank, NA, NaN, null) or only whitespace."""
    if isinstance(value, str):
        return not value.strip()
    return _is_scalar(value) and _is_missing(value)


def label_text(value) -> str:
    """A class label's name: 3.0 reads as '3', and spaces around a name are dropped."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


@dataclass(frozen=True)
class LabelReport:
    """What `check_labels` found in one label column."""

    column: str
    missing_rows: tuple[int, ...]
    """Rows (1-based, in file order) whose label cell is empty: left out."""
    spaced: tuple[tuple[str, tuple[str, ...]], ...]
    """Labels written both with and without surrounding spaces: (name, variants)."""
    case_variants: tuple[tuple[tuple[str, int], ...], ...]
    """Groups of labels that differ only by case, each as (label, rows)."""

    def warnings(self, name: str) -> tuple[str, ...]:
        """One sentence per problem, naming the file `name`, the column and the rows."""
        out = []
        col = self.column
        if self.missing_rows:
            n = len(self.missing_rows)
            shown = ", ".join(str(r) for r in self.missing_rows[:5])
            more = f" and {n - 5} more" if n > 5 else ""
            out.append(f"{n} row{'s' if n != 1 else ''} of {name} "
                       f"{'have' if n != 1 else 'has'} no label in {col!r} (blank or NA: "
                       f"row{'s' if n != 1 else ''} {shown}{more}); "
                       f"{'they are' if n != 1 else 'it is'} left out.")
        for label, variants in self.spaced:
            out.append(f"Labels {_and(repr(v) for v in variants)} in {col!r} of {name} differ "
                       f"only by spaces around them; they are read as one label, {label!r}.")
        for group in self.case_variants:
            listed = _and(f"{label!r} ({rows} row{'s' if rows != 1 else ''})"
                          for label, rows in group)
            out.append(f"Labels {listed} in {col!r} of {name} differ only by case; they are "
                       "kept as separate classes. If they mean the same, make them one in "
                       "the data.")
        return tuple(out)


def check_labels(values: Sequence, column: str, *,
                 names: Callable[[object], Iterable[str]] | None = None) -> LabelReport:
    """Empty cells, and labels that differ only by spaces or case, in a label column.

    `values` are the column's cells in file order; `names(value)` gives the
    label names a cell holds, unstripped (default: the cell's own text; a
    multi-label cell holds several).
    """
    names = names or (lambda v: [str(int(v)) if isinstance(v, float) and v.is_integer()
                                 else str(v)])
    missing = []
    raw: Counter[str] = Counter()
    for row, value in enumerate(values, 1):
        if is_missing_label(value):
            missing.append(row)
            continue
        raw.update(n for n in names(value) if n.strip())
    return label_report(column, missing, raw)


def label_report(column: str, missing: Sequence[int], raw: Counter[str]) -> LabelReport:
    """The report from the rows (1-based) whose label is empty and each label name as
    written (unstripped) with its count: what `check_labels` and the Arrow reader share."""
    by_stripped: dict[str, list[str]] = {}
    for label in raw:
        by_stripped.setdefault(label.strip(), []).append(label)
    spaced = tuple((label, tuple(sorted(variants, key=lambda v: (v != label, v))))
                   for label, variants in sorted(by_stripped.items()) if len(variants) > 1)
    counts: Counter[str] = Counter()
    for label, n in raw.items():
        counts[label.strip()] += n
    by_folded: dict[str, list[str]] = {}
    for label in counts:
        by_folded.setdefault(label.casefold(), []).append(label)
    case_variants = tuple(tuple((label, counts[label]) for label in sorted(group))
                          for _, group in sorted(by_folded.items()) if len(group) > 1)
    return LabelReport(column, tuple(missing), spaced, case_variants)


def case_twin(label: str, names: Iterable[str]) -> str | None:
    """Another of `names` that differs from `label` only by case, if any."""
    folded = label.casefold()
    return next((n for n in names if n != label and n.casefold() == folded), None)


def _and(items: Iterable[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _preview_folder(root: Path, limit: int) -> DataPreview:
    """An image folder: one sub-folder per class; files are counted, not opened."""
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class sub-folders; give a data file, or a folder with "
                        "one sub-folder of images per class.")
    counts = {c.name: sum(1 for f in c.rglob("*") if f.is_file()) for c in classes}
    rows = []
    for c in classes:
        for f in sorted(c.iterdir())[:2]:
            rows.append((f"{c.name}/{f.name}", c.name))
    return DataPreview(
        path=str(root), columns=("path", "label"), rows=tuple(rows[:limit]),
        total_rows=sum(counts.values()),
        label_counts=tuple(sorted(counts.items(), key=lambda kv: -kv[1])),
        text_column="path", label_column="label",
    )


def _guess(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)
