"""A quick look at a data file before training: columns, first rows, labels.

Torch-free and cheap, so the TUI can call it on every keystroke of a path:
CSV, TSV and JSONL are read with the standard library, Parquet with pyarrow.
Problems are `DataError`s naming the file and what to do.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from engine.errors import DataError

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


def preview_file(path: Path, *, encoding: str = "utf-8", label_column: str | None = None,
                 text_column: str | None = None, limit: int = 5) -> DataPreview:
    if path.is_dir():
        return _preview_folder(path, limit)
    records, columns = _read_any(path, encoding)
    text_column = text_column if text_column in columns else _guess(columns, TEXT_NAMES)
    label_column = label_column if label_column in columns else _guess(columns, LABEL_NAMES)
    counts: Counter[str] = Counter()
    if label_column is not None:
        index = columns.index(label_column)
        counts.update(r[index] for r in records if index < len(r) and r[index] != "")
    return DataPreview(
        path=str(path), columns=tuple(columns),
        rows=tuple(tuple(r) for r in records[:limit]), total_rows=len(records),
        label_counts=tuple(counts.most_common()), text_column=text_column,
        label_column=label_column,
    )


def read_columns(path: Path, columns: list[str], *, encoding: str = "utf-8") -> list[list[str]]:
    """Every row's values of `columns`, as text (list cells joined by spaces)."""
    records, header = _read_any(path, encoding)
    for column in columns:
        if column not in header:
            raise DataError(f"{path.name} has no column {column!r}; its columns are "
                            f"{', '.join(header)}.")
    index = [header.index(c) for c in columns]
    out = []
    for record in records:
        out.append([_as_text(record[i]) if i < len(record) else "" for i in index])
    return out


def _as_text(cell: str) -> str:
    """A JSON list cell (tokens of a token-classification row) as the words it holds."""
    if cell.startswith("["):
        try:
            value = json.loads(cell)
        except json.JSONDecodeError:
            return cell
        if isinstance(value, list):
            return " ".join(str(v) for v in value)
    return cell


def _read_any(path: Path, encoding: str) -> tuple[list[list[str]], list[str]]:
    """(records, header) of a data file, every cell as text."""
    if not path.exists():
        raise DataError(f"{path} does not exist; check the path.")
    if path.is_dir():
        raise DataError(f"{path} is a folder of images; it has no text to count tokens of.")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            columns, records = _read_delimited(path, encoding, "," if suffix == ".csv" else "\t")
        elif suffix in (".jsonl", ".json"):
            columns, records = _read_jsonl(path, encoding)
        elif suffix == ".parquet":
            columns, records = _read_parquet(path)
        elif suffix in (".conll", ".conllu", ".bio", ".txt"):
            columns, records = _read_conll(path, encoding)
        else:
            raise DataError(f"Cannot tell the format of {path.name}; use .csv, .tsv, .jsonl "
                            "or .parquet.")
    except UnicodeDecodeError:
        raise DataError(f"{path.name} is not valid {encoding} text ({bad_byte(path, encoding)});"
                        " set the encoding, e.g. latin-1.") from None
    if not columns:
        raise DataError(f"{path.name} has no header row.")
    return records, columns


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


def _read_conll(path: Path, encoding: str) -> tuple[list[str], list[list[str]]]:
    """CoNLL text: a sentence per blank-line-separated block, `word ... tag` per line."""
    records, words, tags = [], [], []
    with open(path, encoding=encoding) as fh:
        for line in [*fh, ""]:
            parts = line.split()
            if len(parts) >= 2 and not line.startswith("-DOCSTART-"):
                words.append(parts[0])
                tags.append(parts[-1])
            elif words:
                records.append([" ".join(words), " ".join(tags)])
                words, tags = [], []
    return ["tokens", "tags"], records


def bad_byte(path: Path, encoding: str) -> str:
    """Where a file first fails to decode, as 'byte 0xe9 on line 2'.

    Readers decode in chunks and report offsets within a chunk; this finds
    the position in the whole file, which is what a user can look at.
    """
    data = path.read_bytes()
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"byte {data[exc.start]:#x} on line {line}"
    return "an undecodable byte"


def _guess(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.lower(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _read_delimited(path: Path, encoding: str, sep: str) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="", encoding=encoding) as fh:
        reader = csv.reader(fh, delimiter=sep)
        try:
            header = next(reader)
        except StopIteration:
            return [], []
        except csv.Error as exc:
            raise DataError(f"{path.name} cannot be parsed: {exc}.") from None
        try:
            rows = [row for row in reader if row]
        except csv.Error as exc:
            raise DataError(f"{path.name} cannot be parsed at line {reader.line_num}: "
                            f"{exc}.") from None
    return header, rows


def _read_jsonl(path: Path, encoding: str) -> tuple[list[str], list[list[str]]]:
    columns: list[str] = []
    records: list[dict] = []
    with open(path, encoding=encoding) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise DataError(f"{path.name} line {number} is not valid JSON.") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path.name} line {number} is not a JSON object.")
            for key in obj:
                if key not in columns:
                    columns.append(key)
            records.append(obj)
    return columns, [[_cell(r.get(c)) for c in columns] for r in records]


def _read_parquet(path: Path) -> tuple[list[str], list[list[str]]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own types for every malformed file
        raise DataError(f"{path.name} cannot be read as Parquet ({type(exc).__name__}).") from None
    columns = table.column_names
    data = table.to_pylist()
    return columns, [[_cell(r.get(c)) for c in columns] for r in data]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)
