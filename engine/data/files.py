"""Local data files read through the `datasets` library into Arrow, as hub splits are.

A CSV, TSV, JSONL, JSON array or Parquet file becomes a `datasets.Dataset` whose
table `datasets` writes once into its cache under hubtune's data directory
(`<data dir>/cache/datasets`, fingerprinted by the file's path, size and
modification time, so an edited file is read again) and memory-maps from there:
a file larger than memory trains with flat memory, as hub data does, and the
rows go on through the same Arrow reading path (engine/data/hub/text.py).

The reading rules are engine/data/formats.py's, shared with the table reader batch
prediction writes through (engine/data/reader.py), so a preview and a run agree: the
encoding's byte-order mark dropped, a spreadsheet's ';' sniffed
from the header line, header names trimmed of spaces (two equal once trimmed are
refused), and every failure the same one-sentence `DataError`. Torch-free; never
reaches the network.
"""

from __future__ import annotations

from pathlib import Path

from engine.core import cache_files
from engine.core.errors import DataError
from engine.data.formats import (
    _column_names,
    _delimiter,
    _first_line,
    _starts_with,
    bad_byte,
    file_kind,
    text_encoding,
)

FORMAT = 3
"""Bumped when the way a file is turned into its Arrow table changes."""
READ_ROWS = 10_000
"""Rows read per batch: `datasets`' CSV chunk, and the step at which a stop is seen."""
MAX_FILES = 32
MAX_BYTES = 16 << 30
"""Older tables go once the cache holds more than this."""


def cache_dir() -> Path:
    """Where `datasets` keeps the Arrow tables of local files."""
    from store.paths import data_dir

    return data_dir() / "cache" / "datasets"


def open_file(path: Path, *, encoding: str = "utf-8", role: str = "training",
              conll: bool = False):
    """A data file's rows as a memory-mapped `datasets.Dataset`; `role` (training,
    validation, data) names the file in messages. With `conll`, CoNLL text (.conll,
    .conllu, .bio, .txt) is read too, as tokens and tags columns (held in memory)."""
    kind, what = file_kind(path, role, conll=conll), f"The {role} file {path}"
    codec = text_encoding(encoding)
    try:
        array = kind == "jsonl" and path.suffix.lower() == ".json" and \
            _starts_with(path, codec, "[")
        ds = _json_array(path, codec) if array else _conll(path, codec) if kind == "conll" \
            else None
    except (UnicodeDecodeError, ValueError, TypeError) as exc:  # pyarrow: mixed kinds
        raise _read_error(exc, path, kind, codec, encoding, what) from None
    if ds is None:
        ds = _load(path, kind, codec, encoding, what)
    names = _column_names(ds.column_names, path)
    if names != list(ds.column_names):
        ds = ds.rename_columns(dict(zip(ds.column_names, names, strict=True)))
    if len(ds) == 0:
        raise DataError(f"{what} has no rows.")
    return ds


def _load(path: Path, kind: str, codec: str, encoding: str, what: str):
    import glob

    import datasets
    from datasets.exceptions import DatasetGenerationError

    from engine.data.formats import quiet_datasets

    quiet_datasets()
    # Its readers log a failure before raising it; the raised one becomes our sentence.
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    options: dict = {}
    builder = {"tsv": "csv", "jsonl": "json"}.get(kind, kind)
    try:
        if kind in ("csv", "tsv"):
            # pandas' reader under `datasets`: the same missing-value rules as a preview's.
            options = {"sep": _delimiter(path, codec, kind), "encoding": codec}
        elif kind == "jsonl":
            options = {"encoding": codec}
        target = cache_dir() / f"{_cache_key(path, builder, options)}.arrow"
        if not target.is_file():
            if kind == "jsonl":
                batches = _json_lines(path, codec)
            else:
                # A name holding [, * or ? is a glob pattern to `datasets`: escaped.
                rows = datasets.load_dataset(builder, split="rows", streaming=True,
                                             data_files={"rows": [glob.escape(str(path))]},
                                             **options)
                batches = rows.with_format("arrow").iter(batch_size=READ_ROWS)
            _write_arrow(batches, target, path, kind)
        cache_files.touch(target)  # the newest use survives pruning
        return datasets.Dataset.from_file(str(target))
    except (DatasetGenerationError, ValueError, OSError, TypeError) as exc:  # decode errors too
        raise _read_error(exc, path, kind, codec, encoding, what) from None


def _cache_key(path: Path, builder: str, options: dict) -> str:
    """Names a file's Arrow table: its place, size and modification time (an edit misses),
    how it is read, and this module's format."""
    import hashlib
    import json

    st = path.stat()
    parts = [FORMAT, str(path.resolve()), st.st_size, st.st_mtime_ns, builder, options]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _write_arrow(batches, target: Path, path: Path, kind: str) -> None:
    """Stream a file's rows (Arrow tables of about `READ_ROWS` rows) into one Arrow file (written aside and
    renamed into place, so a crash or a stop leaves none), honouring a stop request
    between batches; memory holds one batch, whatever the file's size."""
    import os

    import pyarrow as pa

    from engine.data.examples import check_stop

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.{os.getpid()}.partial")
    writer, taken = None, 0
    try:
        for batch in batches:
            check_stop()
            # The names a config gives: trimmed, as the table keeps them.
            batch = batch.rename_columns(_column_names(batch.schema.names, path))
            if writer is None:
                schema = batch.schema
                writer = pa.ipc.new_stream(str(partial), schema)
            elif batch.schema != schema:
                batch = _same_types(batch, schema, path, kind, taken)
            writer.write_table(batch)
            taken += batch.num_rows
        if writer is None:  # not one batch: a header and no rows
            writer = pa.ipc.new_stream(str(partial), pa.schema([]))
        writer.close()
        writer = None
        partial.replace(target)
    finally:
        if writer is not None:
            writer.close()
        partial.unlink(missing_ok=True)
    prune(target.parent)


def _same_types(batch, schema, path: Path, kind: str, taken: int):
    """A later batch in the first one's column types; a column whose values change kind
    part way (numbers, then names) is a sentence naming it."""
    try:
        return batch.select(schema.names).cast(schema)
    except (ValueError, TypeError, KeyError) as exc:  # pyarrow's ArrowInvalid: a ValueError
        changed = [f.name for f in schema if f.name in batch.schema.names
                   and batch.schema.field(f.name).type != f.type]
        where = f"column {changed[0]!r}" if changed else "its columns"
        raise DataError(f"{path} cannot be read as one table: {where} holds "
                        f"{schema.field(changed[0]).type if changed else 'one kind'} values "
                        f"up to row {taken} and then others ({_first_line(exc)}); make the "
                        "column hold one kind of value.") from None


def prune(folder: Path, keep: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> None:
    """Keep the `keep` most recently used tables, fewer if they hold over `max_bytes`
    (engine.core.cache_files' rule). A table another process has open stays readable: a
    memory map outlives the file's name."""
    cache_files.prune(folder.glob("*.arrow"), keep, max_bytes)


def _read_error(exc: Exception, path: Path, kind: str, codec: str, encoding: str,
                what: str) -> DataError:
    """The sentence for a failed read, from the reader's own error under `datasets`'."""
    import pandas as pd

    cause = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        if isinstance(cause, (UnicodeDecodeError, pd.errors.EmptyDataError,
                              pd.errors.ParserError)):
            break
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, UnicodeDecodeError):
        return DataError(f"{path} is not valid {encoding} text ({bad_byte(path, codec)}); set "
                         "data.encoding to the file's encoding, e.g. latin-1.")
    if isinstance(cause, pd.errors.EmptyDataError) or "corresponds to no data" in str(cause):
        return DataError(f"{what} has no rows.")
    if isinstance(cause, (pd.errors.ParserError, ValueError)):
        return DataError(f"{path} cannot be parsed as {kind.upper()}: {_first_line(cause)}.")
    return DataError(f"Cannot read {path}: {_first_line(cause)}.")


def _json_lines(path: Path, codec: str):
    """JSON lines as Arrow tables of `READ_ROWS` rows, parsed by pandas (what `datasets`
    falls back to): Arrow's own JSON parser crashes the process on some malformed lines
    (a line such as `nullx`: apache/arrow#47409), and a broken file must be a sentence.
    A column mixing kinds (numbers and names) is kept as JSON text, as `datasets` keeps it."""
    import pandas as pd

    try:
        reader = pd.read_json(path, lines=True, encoding=codec, precise_float=True,
                              chunksize=READ_ROWS)
        with reader:
            yield from (_arrow(frame) for frame in reader)
    except ValueError as exc:
        raise DataError(f"{path} cannot be parsed as JSONL: {_first_line(exc)}.") from None


def _arrow(frame):
    """A pandas frame as an Arrow table; a column Arrow cannot type as one kind becomes
    JSON text (Arrow's json extension type, which `datasets` reads back decoded)."""
    import json

    import pyarrow as pa

    columns = {}
    for name in frame.columns:
        try:
            columns[str(name)] = pa.array(frame[name], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            text = [None if _blank_cell(v) else json.dumps(_plain(v)) for v in frame[name]]
            columns[str(name)] = pa.ExtensionArray.from_storage(pa.json_(pa.string()),
                                                                 pa.array(text, pa.string()))
    return pa.table(columns)


def _blank_cell(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _json_array(path: Path, codec: str):
    """A .json file holding one array of row objects, which the lines reader would take
    for a single row."""
    import datasets

    from engine.data.formats import _read_json_array

    return datasets.Dataset.from_pandas(_read_json_array(path, codec), preserve_index=False)


def _conll(path: Path, codec: str):
    """CoNLL text's sentences as a `datasets.Dataset` of tokens and tags columns."""
    import datasets

    from engine.data.formats import conll_sentences

    rows = conll_sentences(path, codec)
    return datasets.Dataset.from_dict({"tokens": [r["tokens"] for r in rows],
                                       "tags": [r["tags"] for r in rows]})
