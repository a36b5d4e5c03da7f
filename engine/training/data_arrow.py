"""A run's prepared data (`TaskData`) as Arrow files and back: the data cache's entries.

An entry is a folder: `meta.json` (label names, the majority class, warnings, the
`extra` evaluation reads beyond the examples, and how each split's examples are kept)
and, per split, Arrow streams of the example columns. Examples that already live in an
Arrow file on disk (a large local file's token ids, a hub split's tokenised table) are
linked into the entry (a hard link; a copy across file systems), never rewritten, so
caching a split of millions of rows costs no copy and no memory; Python lists (a small
set's tokens, QA windows' offsets) are written as Arrow columns. Read back, a split is
the kind it was written from: lists stay lists (what a small set trains fastest from)
and Arrow rows are memory-mapped and read a row at a time (`MappedTable`), so a cache
hit keeps memory as flat as a fresh read.

`write_entry` raises `Uncacheable` for data it cannot keep (an example kind it does not
know, a field Arrow cannot type); the caller then leaves the run uncached. Torch-free.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from engine.data.examples import SequenceExamples
from engine.data.file_tokens import MappedTable, TrimmedColumn, mapped_examples
from engine.data.hub.text import ArrowColumn, ArrowSequenceExamples
from engine.tasks.base import FieldExamples, TaskData

FORMAT = 2
"""Bumped when the layout of an entry changes (1 was a pickle)."""
SPLITS = ("train", "validation")


class Uncacheable(Exception):
    """The data holds something an entry cannot keep; the run goes on uncached."""


# -- writing ----------------------------------------------------------------------


def write_entry(folder: Path, data: TaskData) -> None:
    """Write `data` into the entry folder `folder` (which must not exist yet)."""
    if type(data) is not TaskData:
        raise Uncacheable(type(data).__name__)
    splits = {}
    for name in SPLITS:
        splits[name] = _write_split(getattr(data, name), folder, name)
    meta = {"format": FORMAT, "labels": list(data.labels),
            "majority_class": data.majority_class, "warnings": list(data.warnings),
            "extra": data.extra, "splits": splits}
    try:
        text = json.dumps(meta, default=_plain)
    except (TypeError, ValueError) as exc:  # an extra Python object JSON cannot hold
        raise Uncacheable(str(exc)) from None
    (folder / "meta.json").write_text(text)


def _write_split(examples, folder: Path, name: str) -> dict:
    """Write one split's examples; returns how to read them back."""
    if type(examples) is SequenceExamples:
        columns = {"input_ids": _ints(examples.input_ids, "int32"),
                   "labels": _array(examples.labels, "labels")}
        if examples.token_type_ids is not None:
            columns["token_type_ids"] = _ints(examples.token_type_ids, "int8")
        _write_table(columns, folder / f"{name}.arrow")
        return {"kind": "sequence", "lists": True}
    if type(examples) is ArrowSequenceExamples:
        _link_or_write(examples.ds, folder / f"{name}.arrow")
        return {"kind": "sequence", "lists": False}
    if type(examples) is FieldExamples:
        return _write_fields(examples, folder, name)
    raise Uncacheable(type(examples).__name__)


def _write_fields(examples: FieldExamples, folder: Path, name: str) -> dict:
    """FieldExamples: fields read from one Arrow table (hub splits) linked as
    `<split>.arrow`; list fields, attributes set on the examples (QA windows' owners and
    offsets) and the lengths in `<split>.lists.arrow`."""
    tables = {id(v.ds): v.ds for v in examples.fields.values() if type(v) is ArrowColumn}
    if len(tables) > 1:
        raise Uncacheable("fields from several tables")
    arrow = [k for k, v in examples.fields.items() if type(v) is ArrowColumn]
    if tables:
        _link_or_write(next(iter(tables.values())), folder / f"{name}.arrow")
    lists = [k for k in examples.fields if k not in arrow]
    attrs = [k for k in vars(examples) if k not in ("fields", "lengths")]
    columns = {f"field.{k}": _array(examples.fields[k], k) for k in lists}
    columns.update({f"attr.{k}": _array(getattr(examples, k), k) for k in attrs})
    columns["lengths"] = _array(examples.lengths, "lengths")
    _write_table(columns, folder / f"{name}.lists.arrow")
    return {"kind": "fields", "arrow": arrow, "lists": lists, "attrs": attrs,
            "order": list(examples.fields)}


def _array(values, what: str):
    """A Python list as an Arrow array (list-of-int columns as int32 where they fit)."""
    import pyarrow as pa

    try:
        array = pa.array(list(values))
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        raise Uncacheable(f"{what}: {exc}") from None
    if array.type == pa.list_(pa.int64()):
        try:
            return array.cast(pa.list_(pa.int32()))
        except pa.ArrowInvalid:  # a value past int32: kept wide
            return array
    return array


def _ints(rows, kind: str):
    """Token rows (lists of small ints) as one Arrow list column."""
    import pyarrow as pa

    try:
        return pa.array(rows, pa.list_(getattr(pa, kind)()))
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return _array(rows, "tokens")


def _write_table(columns: dict, path: Path) -> None:
    import pyarrow as pa

    table = pa.table(columns)
    with pa.ipc.new_stream(str(path), table.schema) as writer:
        writer.write_table(table, max_chunksize=65_536)


def _link_or_write(ds, path: Path) -> None:
    """The Arrow file `ds` reads (a `MappedTable`, or a `datasets.Dataset` held in one
    file of its own) linked in as `path`; written out when there is no such file."""
    source = _source_file(ds)
    if source is not None:
        try:
            os.link(source, path)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(source, path)
        return
    import pyarrow as pa

    table = getattr(ds.data, "table", ds.data)  # datasets' Table wraps a pyarrow one
    with pa.ipc.new_stream(str(path), table.schema) as writer:
        for batch in table.to_batches(max_chunksize=65_536):
            writer.write_batch(batch)


def _source_file(ds) -> Path | None:
    if isinstance(ds, MappedTable):
        return ds.path
    if getattr(ds, "_indices", None) is not None:  # a selection: its file holds other rows
        raise Uncacheable("a selection of a table")
    files = getattr(ds, "cache_files", None) or []
    if len(files) != 1:
        return None
    path = Path(files[0]["filename"])
    try:  # the file must hold exactly the table `ds` reads (no columns added in memory)
        if MappedTable(path).data.schema.names != list(ds.column_names):
            return None
    except (OSError, ValueError):
        return None
    return path


def _plain(value):
    """numpy values (label indices, arrays) as plain JSON."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


# -- reading ----------------------------------------------------------------------


def read_entry(folder: Path) -> TaskData:
    """The TaskData an entry holds; FileNotFoundError when there is none, any other error
    when it is damaged."""
    meta = json.loads((folder / "meta.json").read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"entry format {meta.get('format')}")
    train, validation = (_read_split(folder, name, meta["splits"][name]) for name in SPLITS)
    return TaskData(train, validation, tuple(meta["labels"]), meta["majority_class"],
                    meta["extra"], tuple(meta["warnings"]))


def _read_split(folder: Path, name: str, how: dict):
    if how["kind"] == "sequence":
        if not how["lists"]:
            return mapped_examples(folder / f"{name}.arrow")
        table = MappedTable(folder / f"{name}.arrow").data
        types = table.column("token_type_ids") if "token_type_ids" in table.column_names \
            else None
        return SequenceExamples(_rows(table.column("input_ids")),
                                _rows(types) if types is not None else None,
                                table.column("labels").to_pylist())
    if how["kind"] != "fields":
        raise ValueError(f"examples of kind {how['kind']!r}")
    lists = MappedTable(folder / f"{name}.lists.arrow").data
    fields = {}
    if how["arrow"]:
        table = MappedTable(folder / f"{name}.arrow")
        fields = {k: TrimmedColumn(table, k) for k in how["arrow"]}
    fields.update({k: _rows(lists.column(f"field.{k}")) for k in how["lists"]})
    # The fields in the order the task built them, as a collator meets them.
    examples = FieldExamples({k: fields[k] for k in how["order"]},
                             lists.column("lengths").to_pylist())
    for k in how["attrs"]:
        setattr(examples, k, _rows(lists.column(f"attr.{k}")))
    return examples


def _rows(column) -> list:
    """An Arrow column as Python values: a list of ints per row read by offsets (several
    times faster than Arrow's own conversion), anything else as Arrow converts it."""
    import pyarrow as pa

    array = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if not (pa.types.is_list(array.type) and pa.types.is_integer(array.type.value_type)
            and array.null_count == 0 and array.values.null_count == 0):
        return array.to_pylist()
    offsets = array.offsets.to_numpy().tolist()
    flat = array.values.to_numpy().tolist()
    return [flat[offsets[i]:offsets[i + 1]] for i in range(len(array))]


def damaged(folder: Path) -> None:
    """Remove an entry that failed to read, so it is built afresh."""
    shutil.rmtree(folder, ignore_errors=True)
