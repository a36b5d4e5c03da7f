"""Hub dataset splits read through the `datasets` library: Arrow, memory-mapped.

The files of a split (downloaded by engine/data/hub/fetch.py; this module
takes them as paths and never reaches the hub) become a `datasets.Dataset`
whose table lives on disk in the `datasets` cache, so a split larger than
RAM trains: rows are tokenised by a batched `map` into another on-disk table,
and `ArrowSequenceExamples` hands the training loop one row at a time from it. The
run's worker process holds the token ids only as Arrow buffers, never as Python lists;
labels and lengths (one small int a row) are the exception.

`data.limit` reads only the row groups holding a seeded sample of rows (the
Parquet footers say where they are). Columns map as for files (a default
column name that is absent falls back to a conventional one, an explicit one
never does), `ClassLabel` features give label names, and every problem is a
`DataError` naming the dataset, subset, split and column. Imports neither
torch nor textual.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.errors import DataError
from engine.data.formats import quiet_datasets  # noqa: F401  re-exported
from engine.data.reader import LABEL_NAMES, TEXT_NAMES

MAP_BATCH_ROWS = 1000
"""Rows per batched `map` call: `datasets`' own default, which its throughput is tuned to."""


# -- reading a split ----------------------------------------------------------------


def open_split(paths: Sequence[Path], where: str, *, limit: int | None = None,
               seed: int = 0):
    """The split's rows as a `datasets.Dataset` (memory-mapped Arrow), or with `limit` a
    seeded sample of that many rows read from the Parquet row groups that hold them."""
    import datasets
    from datasets.exceptions import DatasetsError

    quiet_datasets()
    paths = [Path(p) for p in paths]
    kinds = {_kind(p) for p in paths}
    if len(kinds) != 1:
        raise DataError(f"{where} mixes file formats ({', '.join(sorted(kinds))}); hubtune "
                        "reads one format per split.")
    kind = kinds.pop()
    if kind == "parquet" and not _parquet_rows(paths, where):
        # `datasets` fails on a file of no rows; an empty split is still a split to look at.
        return datasets.Dataset(_parquet_schema(paths[0], where).empty_table())
    if limit is not None and kind == "parquet":
        return _sample_parquet(paths, limit, seed, where)
    if kind != "parquet" and all(_blank(p) for p in paths):
        raise DataError(f"{where} has no rows (its files are empty).")
    options = {"delimiter": "\t"} if any(p.suffix.lower() == ".tsv" for p in paths) else {}
    try:
        ds = datasets.load_dataset(kind, data_files={"rows": [str(p) for p in paths]},
                                   split="rows", **options)
    except (ValueError, OSError, TypeError, StopIteration, DatasetsError) as exc:
        raise DataError(f"{where} cannot be read: {_first_line(exc.__cause__ or exc)}.") \
            from None
    if limit is not None and len(ds) > limit:
        ds = ds.select(sorted(random.Random(seed).sample(range(len(ds)), limit)))
    return ds


def _parquet_rows(paths: list[Path], where: str) -> int:
    """Rows of Parquet files, from their footers alone."""
    import pyarrow.parquet as pq

    try:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{where} cannot be read: {_first_line(exc)}.") from None


def _parquet_schema(path: Path, where: str):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).schema_arrow
    except (OSError, ValueError) as exc:
        raise DataError(f"{where} cannot be read: {_first_line(exc)}.") from None


def _blank(path: Path) -> bool:
    """A text file with nothing but whitespace in it (read only when small)."""
    size = path.stat().st_size
    return size == 0 or (size < 1 << 16 and not path.read_bytes().strip())


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    return {".parquet": "parquet", ".csv": "csv", ".tsv": "csv", ".jsonl": "json",
            ".json": "json"}.get(suffix, suffix.lstrip(".") or "unknown")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].rstrip(".") if text else type(exc).__name__


def _sample_parquet(paths: list[Path], limit: int, seed: int, where: str):
    """`limit` rows picked uniformly (seeded) over every shard, reading the footers and
    only the row groups that hold a picked row."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [pq.ParquetFile(p) for p in paths]
    starts, total = [], 0
    for f in files:
        starts.append(total)
        total += f.metadata.num_rows
    if total == 0:
        raise DataError(f"{where} has no rows.")
    picks = sorted(random.Random(seed).sample(range(total), min(limit, total)))
    tables = []
    for f, start in zip(files, starts, strict=True):
        group_start = start
        for g in range(f.metadata.num_row_groups):
            rows = f.metadata.row_group(g).num_rows
            lo = bisect.bisect_left(picks, group_start)
            hi = bisect.bisect_left(picks, group_start + rows)
            if hi > lo:
                local = [p - group_start for p in picks[lo:hi]]
                tables.append(f.read_row_group(g).take(pa.array(local)))
            group_start += rows
    table = pa.concat_tables(tables).replace_schema_metadata(files[0].schema_arrow.metadata)
    return datasets.Dataset(table)


# -- columns and labels -------------------------------------------------------------


def pick_hub_column(ds, where: str, wanted: str, key: str, default: str,
                    names: tuple[str, ...]) -> tuple[str, str | None]:
    """(column, note): the configured column; while the key is left at its default, a
    conventional name (sentence for text, ...) instead, with a note saying so."""
    columns = list(ds.column_names)
    if wanted in columns:
        return wanted, None
    if wanted == default:
        lowered = {c.lower(): c for c in columns}
        found = next((lowered[n] for n in names if n in lowered), None)
        if found is not None:
            return found, f"data.{key}: {where} has no column {wanted!r}; reading {found!r}"
    raise DataError(f"{where} has no column {wanted!r} (data.{key}); its columns are "
                    f"{', '.join(columns)}. Set data.{key} to the right one.")


def require_column(ds, where: str, column: str, key: str) -> None:
    if column not in ds.column_names:
        raise DataError(f"{where} has no column {column!r} (data.{key}); its columns are "
                        f"{', '.join(ds.column_names)}. Set data.{key} to the right one.")


def text_columns(ds, where: str, spec) -> tuple[str, str | None, str, list[str]]:
    """(text column, pair column, label column, notes) of a split, as a file would map."""
    notes = []
    text, note = pick_hub_column(ds, where, spec.text_column, "text_column", "text",
                                 TEXT_NAMES)
    notes += [note] if note else []
    label, note = pick_hub_column(ds, where, spec.label_column, "label_column", "label",
                                  LABEL_NAMES)
    notes += [note] if note else []
    pair = spec.text_pair_column
    if pair is not None:
        require_column(ds, where, pair, "text_pair_column")
    return text, pair, label, notes


def class_names(feature) -> tuple[str, ...] | None:
    """A ClassLabel's names (or those of a list of ClassLabels), else None."""
    import datasets

    inner = getattr(feature, "feature", None)
    if isinstance(feature, datasets.ClassLabel):
        return tuple(feature.names)
    if isinstance(inner, datasets.ClassLabel):
        return tuple(inner.names)
    if isinstance(feature, list) and feature and isinstance(feature[0], datasets.ClassLabel):
        return tuple(feature[0].names)
    return None


@dataclass
class LabelMap:
    """How one task reads a label column into targets."""

    kind: str
    """single (class index), multi (multi-hot) or float (regression)."""
    names: tuple[str, ...] = ()
    """Class names in index order (empty for regression)."""
    by_value: dict = field(default_factory=dict)
    """A cell's value -> class index, where cells are not already ClassLabel indices."""
    native: bool = False
    """The column is a ClassLabel: its ints are the indices."""


def label_map(ds, where: str, column: str, kind: str) -> LabelMap:
    """The label names and the mapping of cells to targets, read from the training split
    (its ClassLabel feature, else the distinct values, counted by Arrow); `kind` is the
    head's: 'single' (a class per row), 'multi' (a list of classes) or 'float' (a
    number, no names)."""
    import pyarrow.compute as pc

    from engine.data.labels import _natural
    from engine.data.reader import label_text

    if kind == "float":
        return LabelMap("float")
    feature = ds.features[column]
    names = class_names(feature)
    if names is not None:
        return LabelMap(kind, names, native=True)
    col = ds.with_format("arrow")[column]
    if kind == "multi":
        col = pc.list_flatten(col)
    values = [v for v in pc.unique(col).to_pylist() if v is not None and str(v).strip()]
    by_text: dict[str, list] = {}
    for v in values:
        by_text.setdefault(label_text(v), []).append(v)
    ordered = tuple(sorted(by_text, key=_natural))
    need = 2
    if len(ordered) < need:
        raise DataError(f"{where} has {'only one label' if ordered else 'no labels'} in "
                        f"{column!r}; classification needs at least two.")
    index = {n: i for i, n in enumerate(ordered)}
    return LabelMap(kind, ordered, {v: index[t] for t, vs in by_text.items() for v in vs})


def checked_labels(ds, where: str, column: str, kind: str,
                   lmap: LabelMap | None = None) -> tuple[object, LabelMap, list[str]]:
    """(the split without unlabelled rows, its LabelMap, warnings): the label rules local
    files follow too (engine.data.labels: empty cells left out and counted by row,
    look-alike labels reported, one kind of class label, numbers for regression, the
    same sentences). A ClassLabel column is already clean: its -1 cells are the
    unlabelled ones. `lmap`: the training split's, for a validation split."""
    import numpy as np

    from engine.data import labels

    if kind != "float" and class_names(ds.features[column]) is not None:
        lmap = lmap or label_map(ds, where, column, kind)
        ds, warning = drop_unlabelled(ds, where, column, lmap)
        return ds, lmap, [warning] if warning else []
    cells = ds.with_format("arrow")
    report, missing = labels.report_labels(cells, column, multi=kind == "multi")
    if missing.all():
        raise DataError(f"{where} has no values in its label column {column!r} (an "
                        "unlabelled split?); pick a labelled split.")
    if kind == "single":
        labels.check_class_cells(cells, where, column)
    elif kind == "float":
        labels.check_numbers(cells, where, column)
    rows = np.flatnonzero(~missing)
    if lmap is None:
        lmap = _rule_map(cells, where, column, kind, rows)
    elif kind != "float":
        seen = labels.check_seen(cells, column, lmap.names, multi=kind == "multi", rows=rows)
        lmap = LabelMap(lmap.kind, lmap.names, {**lmap.by_value, **seen})
    if missing.any():
        ds = ds.select(rows)
    return ds, lmap, list(report.warnings(where))


def _rule_map(cells, where: str, column: str, kind: str, rows) -> LabelMap:
    from engine.data import labels

    if kind == "float":
        return LabelMap("float")
    if kind == "multi":
        return LabelMap("multi", labels.multi_names(cells, where, column, rows))
    return LabelMap("single", *labels.class_names(cells, where, column, rows))


def drop_unlabelled(ds, where: str, column: str, lmap: LabelMap) -> tuple[object, str | None]:
    """The split without rows whose label is missing (null, or -1 in a ClassLabel: the
    hub's unlabelled test splits), and a warning counting them."""
    import pyarrow.compute as pc

    col = ds.with_format("arrow")[column]
    missing = pc.is_null(col)
    if lmap.native and lmap.kind == "single":
        missing = pc.or_(missing, pc.less(pc.fill_null(col, 0), 0))
    n = pc.sum(missing).as_py() or 0
    if n == 0:
        return ds, None
    if n == len(ds):
        raise DataError(f"{where} has no values in its label column {column!r} (an "
                        "unlabelled split?); pick a labelled split.")
    import numpy as np

    keep = np.flatnonzero(~np.asarray(missing.to_numpy(zero_copy_only=False), dtype=bool))
    return ds.select(keep), (f"{n} row{'s' if n != 1 else ''} of {where} "
                             f"{'have' if n != 1 else 'has'} no label in {column!r}; "
                             f"{'they are' if n != 1 else 'it is'} left out.")


def encode_labels(values: list, lmap: LabelMap, where: str, column: str) -> list:
    """A batch of label cells as targets; an unknown class is a one-sentence DataError."""
    from engine.data.labels import label_set

    if lmap.kind == "float":
        try:
            return [float(v) for v in values]
        except (TypeError, ValueError):
            bad = next(v for v in values if not _is_float(v))
            raise DataError(f"Regression needs numbers in {column!r} of {where}, but a row "
                            f"holds {bad!r}; pick the right label column.") from None
    if lmap.kind == "multi":
        names = {n: i for i, n in enumerate(lmap.names)}
        out = []
        for v in values:
            chosen = ({lmap.names[i] for i in v} if lmap.native
                      else {str(x) for x in label_set(v)})
            row = [0.0] * len(lmap.names)
            for name in chosen:
                if name not in names:
                    raise _unseen(name, lmap, where)
                row[names[name]] = 1.0
            out.append(row)
        return out
    if lmap.native:
        return list(values)
    try:
        return [lmap.by_value[v] for v in values]
    except KeyError as exc:
        raise _unseen(exc.args[0], lmap, where) from None


def _is_float(v) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _unseen(label, lmap: LabelMap, where: str) -> DataError:
    return DataError(f"Label {str(label)!r} of {where} never appears in the training data "
                     f"({', '.join(lmap.names)}); fix the label or add training examples of "
                     "it.")


def label_counts(ds, column: str, names: tuple[str, ...] | None) -> list[tuple[str, int]]:
    """(label, rows) over a split, most frequent first, counted by Arrow."""
    import pyarrow.compute as pc

    col = ds.with_format("arrow")[column]
    if hasattr(col, "type") and str(col.type).startswith("list"):
        col = pc.list_flatten(col)
    counts = Counter()
    for entry in pc.value_counts(col).to_pylist():
        value, n = entry["values"], entry["counts"]
        if value is None or (names is not None and value == -1):  # -1: unlabelled
            continue
        if names is not None and isinstance(value, int) and 0 <= value < len(names):
            value = names[value]
        counts[str(value)] += n
    return counts.most_common()


# -- streaming ----------------------------------------------------------------------


def stream_split(shards: Sequence, fetch, rows: int, where: str, *, seed: int,
                 name: str):
    """The first `rows` rows of a split whose files (`shards`, in a seeded order) are
    fetched one at a time by `fetch(shard) -> local path` and read batch by batch, never
    whole; written to one Arrow file in the `datasets` cache (named by `name`, reused by a
    re-run) and memory-mapped. Files past the rows taken are never downloaded."""
    import datasets

    quiet_datasets()
    folder = Path(datasets.config.HF_DATASETS_CACHE) / "hubtune-streams"
    target = folder / f"{name}.arrow"
    if target.is_file():
        return datasets.Dataset.from_file(str(target))
    folder.mkdir(parents=True, exist_ok=True)
    order = list(shards)
    random.Random(seed).shuffle(order)
    partial = target.with_suffix(".partial")
    taken = _write_stream(order, fetch, rows, partial, where)
    if taken == 0:
        partial.unlink(missing_ok=True)
        raise DataError(f"{where} has no rows.")
    partial.replace(target)
    return datasets.Dataset.from_file(str(target))


def _write_stream(order: list, fetch, rows: int, path: Path, where: str) -> int:
    import pyarrow as pa

    from engine.data.examples import check_stop

    writer, taken = None, 0
    try:
        for shard in order:
            for batch, schema in _batches(Path(fetch(shard)), where):
                check_stop()
                batch = batch.slice(0, rows - taken)
                if writer is None:
                    writer = pa.ipc.new_stream(str(path), schema)
                writer.write_batch(batch.cast(schema) if batch.schema != schema else batch)
                taken += batch.num_rows
                if taken >= rows:
                    return taken
        return taken
    finally:
        if writer is not None:
            writer.close()


def _batches(path: Path, where: str):
    """(record batch, schema with the file's feature metadata) of one file, in order."""
    import pyarrow.parquet as pq

    if _kind(path) == "parquet":
        f = pq.ParquetFile(path)
        schema = f.schema_arrow
        for batch in f.iter_batches(batch_size=MAP_BATCH_ROWS):
            yield batch, schema
        return
    table = open_split([path], where).data.table
    for batch in table.to_batches(max_chunksize=MAP_BATCH_ROWS):
        yield batch, table.schema
