"""How a data file's bytes become rows: encodings, delimiters, header names, CoNLL text
and JSON arrays, and `datasets` kept quiet.

The rules of the one reader (engine/data/files.py, which reads a file into the Arrow
table training, the preview, batch prediction and the audit read) and of the files
written like their input (the audit's cleaned copy): a UTF-8 byte-order mark is
dropped, a spreadsheet's ';' is found from the header line, header names are trimmed of
spaces (two equal once trimmed are refused), CoNLL text is one sentence a row, and a
decoding error names the byte and line. Imports nothing else of hubtune but its
errors. Torch-free.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path

from engine.core.errors import DataError

READERS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl",
           ".parquet": "parquet"}
CONLL_SUFFIXES = (".conll", ".conllu", ".bio", ".txt")
DELIMITERS = (",", "\t", ";", "|")
"""What a delimited file may be split on; the extension's own one is tried first."""


def text_encoding(encoding: str) -> str:
    """The codec to decode with: UTF-8 also drops a leading byte-order mark.

    Excel and Notepad write one; read as plain UTF-8 it would end up in the
    first column's name ('\\ufefftext'), which then matches no config.
    """
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"{encoding!r} is not a known text encoding; try utf-8 or "
                        "latin-1.") from None
    return "utf-8-sig" if name == "utf-8" else encoding


def _starts_with(path: Path, codec: str, char: str) -> bool:
    """Whether the file's first character other than white space is `char`."""
    with open(path, encoding=codec) as fh:
        while chunk := fh.read(4096):
            chunk = chunk.lstrip()
            if chunk:
                return chunk.startswith(char)
    return False


def _read_json_array(path: Path, codec: str):
    """A .json file holding one array of row objects (pandas' orient='records'), which the
    lines reader would take for a single row."""
    import pandas as pd

    try:
        doc = json.loads(path.read_text(encoding=codec))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} cannot be parsed as JSON: {exc.msg} at line {exc.lineno}."
                        ) from None
    bad = next((row for row in doc if not isinstance(row, dict)), None)
    if bad is not None:
        raise DataError(f"{path} is a JSON array holding {type(bad).__name__} items; give one "
                        "object per row, e.g. [{\"text\": \"...\", \"label\": \"...\"}].")
    # Cells as JSON gave them: pandas' own types would make whole numbers with a null float.
    return pd.DataFrame(doc, dtype=object)


def _key(role: str) -> str:
    return "train" if role == "training" else role


def file_kind(path: Path, role: str, *, conll: bool = False) -> str:
    """The reader `path` takes (csv, tsv, jsonl, parquet or conll), once it is known to be a
    non-empty file of a known format; else one sentence naming the file by `role`."""
    if not path.exists():
        check = f"data.{_key(role)}" if role in ("training", "validation") else "the path"
        raise DataError(f"The {role} file {path} does not exist; check {check}.")
    if path.is_dir():
        raise DataError(f"The {role} path {path} is a folder; give a CSV, TSV, JSONL or "
                        "Parquet file.")
    suffix = path.suffix.lower()
    kind = "conll" if conll and suffix in CONLL_SUFFIXES else READERS.get(suffix)
    if kind is None:
        raise DataError(f"Cannot tell the format of {path} from its extension; "
                        "use .csv, .tsv, .jsonl or .parquet.")
    if path.stat().st_size == 0:
        raise DataError(f"The {role} file {path} is empty.")
    return kind


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else type(exc).__name__


def _delimiter(path: Path, codec: str, kind: str) -> str:
    """The extension's delimiter, unless the header line holds none of it but another.

    A '.csv' saved by a spreadsheet in many locales is split on ';'; read on
    ',' it would be one column named 'text;label'.
    """
    expected = "," if kind == "csv" else "\t"
    with open(path, encoding=codec, newline="") as fh:
        header = fh.readline(1 << 16)
    if expected in header:
        return expected
    return next((d for d in DELIMITERS if d in header), expected)


def _column_names(columns, path: Path) -> list[str]:
    """Header names as a config names them: no spaces or byte-order mark around them."""
    names = [str(c).strip().strip("\ufeff").strip() for c in columns]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path} has two columns named {name!r} (spaces around header "
                            "names are ignored); rename one.")
        seen.add(name)
    return names


def conll_sentences(path: Path, codec: str) -> list[dict]:
    """Sentences from CoNLL-style text: first column the word, last column its tag; one
    {"tokens", "tags"} row a sentence."""
    rows, words, tags = [], [], []
    with open(path, encoding=codec) as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("-DOCSTART-"):
                if words:
                    rows.append({"tokens": words, "tags": tags})
                    words, tags = [], []
                continue
            parts = line.split()
            if len(parts) < 2:
                raise DataError(f"{path} line {number}: expected a word and a tag, got "
                                f"{line!r}.")
            words.append(parts[0])
            tags.append(parts[-1])
    if words:
        rows.append({"tokens": words, "tags": tags})
    if not rows:
        raise DataError(f"The data file {path} holds no sentences.")
    return rows


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


def quiet_datasets() -> None:
    """No progress bars or info logs from `datasets` (they would garble a TUI)."""
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
