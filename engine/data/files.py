"""Local data files read into Arrow, as hub splits are: the one reader of local data.

A CSV, TSV, JSONL, JSON array or Parquet file is read a batch at a time, as `datasets`'
own readers read it (pandas' CSV and JSON readers, pyarrow's Parquet batches), into one
Arrow table written once into a cache under hubtune's data directory
(`<data dir>/cache/datasets`, keyed by the file's path, size and modification time, so
an edited file is read again) and memory-mapped from there: a file larger than memory
trains with flat memory, as hub data does. A column gets the type a read of the whole
file would give it, whatever the batches: whole numbers with blank cells stay integers
(pandas' own types would make them float, and a copy written out would spell 3 as 3.0),
and a later batch that widens a column (a decimal, text after blanks) retypes the rows
written before it. Training takes it as a `datasets.Dataset`
(`open_file`) and goes on through the hub's Arrow reading path
(engine/data/hub/text.py); the preview, batch prediction and the audit take the same
table (`open_table`, through engine/data/file_rows.py), which imports no `datasets`.

The reading rules are engine/data/formats.py's, so a preview and a run agree: the
encoding's byte-order mark dropped, a spreadsheet's ';' sniffed from the header line,
header names trimmed of spaces (two equal once trimmed are refused), and every failure
the same one-sentence `DataError`. Nothing here lets `datasets` fingerprint (hash with
dill) a table: see `open_file`. Torch-free; never reaches the network.
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

FORMAT = 4
"""Bumped when the way a file is turned into its Arrow table changes."""
READ_ROWS = 10_000
"""Rows read per batch: `datasets`' CSV chunk, and the step at which a stop is seen."""
MAX_FILES = 32
MAX_BYTES = 16 << 30
"""Older tables go once the cache holds more than this."""


def cache_dir() -> Path:
    """Where the Arrow tables of local files are kept."""
    from store.paths import data_dir

    return data_dir() / "cache" / "datasets"


def open_file(path: Path, *, encoding: str = "utf-8", role: str = "training",
              conll: bool = False):
    """A data file's rows as a memory-mapped `datasets.Dataset` over `open_table`'s table;
    `role` (training, validation, data) names the file in messages. With `conll`, CoNLL
    text (.conll, .conllu, .bio, .txt) is read too, as tokens and tags columns (held in
    memory).

    The dataset's fingerprint is the table's own key, given: left to `datasets`, it
    hashes the table with dill, whose pickler imports `transformers` and `torch`
    whenever they are in `sys.modules`, and in the TUI another thread may be half way
    through importing them (a half-imported module then breaks both threads)."""
    import datasets
    from datasets.table import InMemoryTable, MemoryMappedTable

    table, cached, key = _open(path, encoding, role, conll)
    table = MemoryMappedTable(table, str(cached)) if cached else InMemoryTable(table)
    return datasets.Dataset(table, fingerprint=key)


def open_table(path: Path, *, encoding: str = "utf-8", role: str = "training",
               conll: bool = False):
    """A data file's rows as a `pyarrow.Table`, memory-mapped from the cache (CoNLL text and
    a JSON array in memory): `open_file`'s table, without importing `datasets`, which
    is what a preview reads from a thread while the engine thread imports transformers."""
    return _open(path, encoding, role, conll)[0]


def _open(path: Path, encoding: str, role: str, conll: bool):
    """(the table, its cache file or None when held in memory, its key)."""
    kind, what = file_kind(path, role, conll=conll), f"The {role} file {path}"
    codec = text_encoding(encoding)
    try:
        array = kind == "jsonl" and path.suffix.lower() == ".json" and \
            _starts_with(path, codec, "[")
        table = _json_array(path, codec) if array else _conll(path, codec) \
            if kind == "conll" else None
    except (UnicodeDecodeError, ValueError, TypeError) as exc:  # pyarrow: mixed kinds
        raise _read_error(exc, path, kind, codec, encoding, what) from None
    if table is None:
        cached = _load(path, kind, codec, encoding, what)
        table, key = _mapped(cached), cached.stem
    else:
        table = table.rename_columns(_column_names(table.column_names, path))
        cached, key = None, _cache_key(path, kind, {"encoding": codec})
    if table.num_rows == 0:
        raise DataError(f"{what} has no rows.")
    return table, cached, key


def _mapped(target: Path):
    """A cached Arrow file's table, memory-mapped (as `datasets` maps one): its pages are
    read as they are used, so a file larger than memory costs little of it."""
    import pyarrow as pa

    return pa.ipc.open_stream(pa.memory_map(str(target))).read_all()


def _load(path: Path, kind: str, codec: str, encoding: str, what: str) -> Path:
    """The file's Arrow table in the cache, written there first if it is not (the rows
    read a batch at a time, as `datasets`' own CSV, JSON and Parquet readers read them:
    pandas' reader in chunks, pyarrow's Parquet batches)."""
    options: dict = {}
    builder = {"tsv": "csv", "jsonl": "json"}.get(kind, kind)
    try:
        if kind in ("csv", "tsv"):
            # pandas' reader, as under `datasets`: the same missing-value rules as ever.
            options = {"sep": _delimiter(path, codec, kind), "encoding": codec}
        elif kind == "jsonl":
            options = {"encoding": codec}
        target = cache_dir() / f"{_cache_key(path, builder, options)}.arrow"
        if not target.is_file():
            batches = (_json_lines(path, codec) if kind == "jsonl" else
                       _parquet_batches(path) if kind == "parquet" else
                       _csv_batches(path, **options))
            _write_arrow(batches, target, path, kind)
        cache_files.touch(target)  # the newest use survives pruning
        return target
    except (ValueError, OSError, TypeError, NotImplementedError) as exc:  # decoding too
        raise _read_error(exc, path, kind, codec, encoding, what) from None


def _csv_batches(path: Path, sep: str, encoding: str):
    """A CSV or TSV file as Arrow tables of `READ_ROWS` rows: pandas' reader, the one
    `datasets`' CSV builder runs, with its missing-value rules, into Arrow types (pandas'
    own would make a column of whole numbers with a blank cell float, and a copy written
    back out would spell its 3 as 3.0)."""
    import pandas as pd

    with pd.read_csv(path, sep=sep, encoding=encoding, chunksize=READ_ROWS,
                     dtype_backend="pyarrow") as reader:
        for frame in reader:
            yield _arrow(frame)


def _parquet_batches(path: Path):
    """A Parquet file as Arrow tables of up to `READ_ROWS` rows, in its own column types."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as parquet:
        for batch in parquet.iter_batches(batch_size=READ_ROWS):
            yield pa.Table.from_batches([batch])


def _cache_key(path: Path, builder: str, options: dict) -> str:
    """Names a file's Arrow table: its place, size and modification time (an edit misses),
    how it is read, and this module's format."""
    import hashlib
    import json

    st = path.stat()
    parts = [FORMAT, str(path.resolve()), st.st_size, st.st_mtime_ns, builder, options]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _write_arrow(batches, target: Path, path: Path, kind: str) -> None:
    """Stream a file's rows (Arrow tables of about `READ_ROWS` rows) into one Arrow file
    (written aside and renamed into place, so a crash or a stop leaves none), honouring a
    stop request between batches; memory holds one batch, whatever the file's size."""
    import os
    import threading

    import pyarrow as pa

    from engine.data.examples import check_stop

    target.parent.mkdir(parents=True, exist_ok=True)
    # Named by process and thread: the TUI's preview and its engine thread (token counts,
    # the audit) may read one new file at once, and neither may write into the other's.
    partial = target.with_name(f".{target.stem}.{os.getpid()}.{threading.get_ident()}"
                               ".partial")
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
                wider = _wider(schema, batch.schema)
                if wider is not None and wider != schema:
                    # A later batch widens a column (whole numbers, then a decimal; all
                    # blank, then text; a JSON key first seen): the rows written so far
                    # take the type a read of the whole file gives them.
                    writer.close()
                    writer, schema = None, wider
                    writer = _rewritten(partial, schema, path, kind)
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


def _wider(schema, other):
    """The schema both batches' rows fit (whole numbers widen to decimals, an all-null
    column to any type, columns of either kept), or None where a column changes kind."""
    import pyarrow as pa

    try:
        return pa.unify_schemas([schema, other], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def _rewritten(partial: Path, schema, path: Path, kind: str):
    """A writer of `schema` whose stream already holds the rows `partial` held, in its
    types: those rows are copied a batch at a time (read, not memory-mapped, so the
    pages read are not held), so memory stays flat."""
    import pyarrow as pa

    narrow = partial.with_name(partial.name + ".narrow")
    partial.replace(narrow)
    writer = pa.ipc.new_stream(str(partial), schema)
    try:
        with pa.OSFile(str(narrow)) as source:
            for batch in pa.ipc.open_stream(source):
                writer.write_table(_same_types(pa.Table.from_batches([batch]), schema, path,
                                               kind, 0))
    except BaseException:
        writer.close()
        raise
    finally:
        narrow.unlink(missing_ok=True)
    return writer


def _same_types(batch, schema, path: Path, kind: str, taken: int):
    """A later batch in the first one's column types (a column it lacks, a JSON key its
    rows never name, all null); a column whose values change kind part way (numbers,
    then names) is a sentence naming it."""
    import pyarrow as pa

    try:
        for field in schema:
            if field.name not in batch.schema.names:
                batch = batch.append_column(field.name, pa.nulls(batch.num_rows, field.type))
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
    """The sentence for a failed read, from the reader's own error (the first decoding or
    parsing error in its chain of causes)."""
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
    if isinstance(cause, pd.errors.EmptyDataError):
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
                              chunksize=READ_ROWS, dtype_backend="pyarrow")
        with reader:
            yield from (_arrow(frame) for frame in reader)
    except ValueError as exc:
        raise DataError(f"{path} cannot be parsed as JSONL: {_first_line(exc)}.") from None


def _arrow(frame):
    """A pandas frame as an Arrow table, without pandas' metadata (which would bring its
    dtypes back on a later `to_pandas`): whole numbers with missing cells stay nullable
    integers, text is large_string as pandas' own text converts; a column Arrow cannot
    type as one kind becomes JSON text (Arrow's json extension type, which `datasets`
    reads back decoded)."""
    import json

    import pyarrow as pa

    columns = {}
    for name in frame.columns:
        try:
            array = pa.array(frame[name], from_pandas=True)
            columns[str(name)] = array.cast(pa.large_string()) \
                if pa.types.is_string(array.type) else array
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            text = [None if _blank_cell(v) else json.dumps(_plain(v)) for v in frame[name]]
            columns[str(name)] = pa.ExtensionArray.from_storage(pa.json_(pa.string()),
                                                                 pa.array(text, pa.string()))
    return pa.table(columns)


def _blank_cell(value) -> bool:
    return value is None or type(value).__name__ == "NAType" or (
        isinstance(value, float) and value != value)


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _json_array(path: Path, codec: str):
    """A .json file holding one array of row objects, which the lines reader would take
    for a single row."""
    from engine.data.formats import _read_json_array

    return _arrow(_read_json_array(path, codec))


def _conll(path: Path, codec: str):
    """CoNLL text's sentences as an Arrow table of tokens and tags columns."""
    import pyarrow as pa

    from engine.data.formats import conll_sentences

    rows = conll_sentences(path, codec)
    return pa.table({"tokens": [r["tokens"] for r in rows], "tags": [r["tags"] for r in rows]})
