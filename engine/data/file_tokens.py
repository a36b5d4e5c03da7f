"""Tokenising the chosen rows of a local file's Arrow table in one sequential pass.

The table `datasets` holds for a data file (engine/data/files.py) is read a record batch
at a time through ordinary file reads, not the memory map: a memory-mapped table whose
every page is touched once stays resident, so the process would grow with the file
(300 MiB of pages for 2M rows), while a batch read this way is freed when the next is
read. The training and validation rows are picked out of each batch as it passes and
tokenised; a split of more than `LIST_ROWS` rows goes into an Arrow file of token ids
beside the table (named by the table, the rows, the tokenizer and the settings, so a
re-run reuses it) and is memory-mapped for training like hub data's
(`ArrowSequenceExamples`); a smaller one stays as lists. A stop request is honoured
between batches. Imports neither torch nor textual.
"""

from __future__ import annotations

from pathlib import Path

from engine.data.examples import SequenceExamples, check_stop, tokenise
from engine.data.hub.text import ArrowColumn

LIST_ROWS = 100_000
"""A split of up to this many rows is tokenised into Python lists (fast, small); a
larger one into an Arrow file on disk, read a row at a time."""


def encode_file_rows(source: Path, parts: list, columns: tuple[str, str | None, str], lmap,
                     wheres: list[str], tokenizer, max_length: int) -> list:
    """The examples of each of `parts` (sorted numpy row indices into the table at
    `source`), in order: `SequenceExamples`, or `ArrowSequenceExamples` when large."""
    import numpy as np
    import pyarrow as pa

    sinks = [_Sink(source, rows, columns, tokenizer, max_length, lmap) for rows in parts]
    start = 0
    try:
        with pa.OSFile(str(source)) as fh:
            for batch in pa.ipc.open_stream(fh):
                check_stop()
                for sink, rows, where in zip(sinks, parts, wheres, strict=True):
                    lo, hi = np.searchsorted(rows, [start, start + batch.num_rows])
                    if hi > lo:
                        sink.add(batch.take(pa.array(rows[lo:hi] - start)), columns, lmap,
                                 where, tokenizer, max_length)
                start += batch.num_rows
        return [sink.finish() for sink in sinks]
    finally:
        for sink in sinks:
            sink.close()


class _Sink:
    """One split's tokenised rows: lists, or batches written to an Arrow file."""

    def __init__(self, source: Path, rows, columns, tokenizer, max_length: int,
                 lmap) -> None:
        self.lists = len(rows) <= LIST_ROWS
        self.ids: list = []
        self.types: list | None = [] if columns[1] else None
        self.labels: list = []
        self.writer = None
        if not self.lists:
            import os

            key = _key(source, rows, tokenizer, max_length, lmap)
            self.target = source.with_name(f"tokens-{key}.arrow")
            self.partial = source.with_name(f".tokens-{key}.{os.getpid()}.partial")
            self.done = self.target.is_file()

    def add(self, batch, columns, lmap, where: str, tokenizer, max_length: int) -> None:
        from engine.data.hub.splits import encode_labels
        from engine.data.hub.text import _as_text

        if not self.lists and self.done:
            return
        text, pair, label = columns
        texts = [_as_text(v) for v in _values(batch.column(text))]
        pairs = [_as_text(v) for v in _values(batch.column(pair))] if pair else None
        enc = tokenise(tokenizer, texts, pairs, truncation=True, max_length=max_length,
                       padding=False, return_attention_mask=False)
        labels = encode_labels(_values(batch.column(label)), lmap, where, label)
        types = enc.get("token_type_ids") if pair else None
        if self.lists:
            self.ids += enc["input_ids"]
            self.labels += labels
            if types is None:
                self.types = None  # the tokenizer gives none: the model needs none
            elif self.types is not None:
                self.types += types
            return
        self._write(enc["input_ids"], types, labels, lmap)

    def _write(self, ids, types, labels, lmap) -> None:
        import pyarrow as pa

        label_type = (pa.int64() if lmap.kind == "single" else
                      pa.float64() if lmap.kind == "float" else pa.list_(pa.float64()))
        columns = {"input_ids": pa.array(ids, pa.list_(pa.int32())),
                   "labels": pa.array(labels, label_type)}
        if types is not None:
            columns["token_type_ids"] = pa.array(types, pa.list_(pa.int8()))
        table = pa.table(columns)
        if self.writer is None:
            self.writer = pa.ipc.new_stream(str(self.partial), table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        """Drop what a stop or a failure left half written."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if not self.lists:
            self.partial.unlink(missing_ok=True)

    def finish(self):
        if self.lists:
            return SequenceExamples(self.ids, self.types, self.labels)
        if not self.done:
            if self.writer is None:
                raise ValueError("no rows to tokenise")  # the splits are never empty
            self.writer.close()
            self.writer = None
            self.partial.replace(self.target)
        return mapped_examples(self.target)


def mapped_examples(path: Path):
    """The `ArrowSequenceExamples` of a token file (input_ids, labels, token_type_ids for
    pairs), memory-mapped and read a row at a time with the pages handed back."""
    from engine.data.hub.text import ArrowSequenceExamples

    table = MappedTable(path)
    examples = ArrowSequenceExamples(table)  # reads every row's label and length
    examples.input_ids = TrimmedColumn(table, "input_ids")
    if examples.token_type_ids is not None:
        examples.token_type_ids = TrimmedColumn(table, "token_type_ids")
    table.trim()
    return examples


TRIM_ROWS = 128
"""Rows read between two hand-backs of a token file's mapped pages."""


class MappedTable:
    """A token file memory-mapped with read-ahead off, read as `ArrowSequenceExamples`
    reads a `datasets.Dataset` (`.data`, `.column_names`, `len()`); pickled by its path.

    Training reads rows in a random order, and the kernel maps the pages around each
    one read (read-ahead, fault-around), which count against the process: within a few
    thousand rows, the whole file. `trim` hands the mapped pages back (they stay in the
    page cache, so a row read again costs no disk read); `TrimmedColumn` calls it every
    `TRIM_ROWS` rows, which keeps the process's share of the file to a few MiB."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._open()

    def _open(self) -> None:
        import mmap

        import pyarrow as pa

        with open(self.path, "rb") as fh:
            self._map = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        if hasattr(self._map, "madvise") and hasattr(mmap, "MADV_RANDOM"):
            self._map.madvise(mmap.MADV_RANDOM)
        # Zero-copy: the table's buffers are slices of the map.
        self.data = pa.ipc.open_stream(pa.py_buffer(self._map)).read_all()
        self.column_names = self.data.column_names

    def __len__(self) -> int:
        return self.data.num_rows

    def trim(self) -> None:
        import mmap

        if hasattr(self._map, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            self._map.madvise(mmap.MADV_DONTNEED)

    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.path = Path(state["path"])
        self._open()


class TrimmedColumn(ArrowColumn):
    """An `ArrowColumn` of a `MappedTable` that hands the table's pages back every
    `TRIM_ROWS` rows it reads."""

    _reads = 0

    def __getitem__(self, i):
        self._reads += 1
        if self._reads % TRIM_ROWS == 0:
            self.ds.trim()
        return super().__getitem__(i)


def _values(array) -> list:
    """An Arrow column's cells as Python values; JSON text (a column of mixed kinds)
    decoded."""
    import json

    if getattr(array.type, "extension_name", "") == "arrow.json":
        return [None if v is None else json.loads(v) for v in array.storage.to_pylist()]
    return array.to_pylist()


def _key(source: Path, rows, tokenizer, max_length: int, lmap) -> str:
    import hashlib
    import json

    from datasets.fingerprint import Hasher

    parts = [source.name, hashlib.sha256(rows.tobytes()).hexdigest(), Hasher.hash(tokenizer),
             max_length, lmap.kind, list(lmap.names), sorted(map(str, lmap.by_value.items()))]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]
