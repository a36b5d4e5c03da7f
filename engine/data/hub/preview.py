"""A look at one split of a hub dataset: features, split sizes, first rows, label counts.

Reads the files it is given (a preview fetches only the first file of the split)
and the README's dataset_info the fetch carries; never the hub itself. Imports
neither torch nor textual.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.data.hub.splits import class_names, label_counts, open_split, require_column
from engine.data.reader import LABEL_NAMES, TEXT_NAMES


@dataclass(frozen=True)
class HubPreview:
    """A look at one split of a hub dataset, from as little of it as the hub allows."""

    dataset: str
    """hf:OWNER/NAME"""
    sha: str
    subset: str
    subsets: tuple[str, ...]
    split: str
    features: tuple[tuple[str, str], ...]
    """(column, type) in table order; class labels as class_label(neg, pos)."""
    split_rows: dict[str, int | None]
    """Rows per split: the README's dataset_info, else counted from the Parquet footers of
    the files read; None where neither says."""
    rows: tuple[tuple[str, ...], ...]
    """The first rows, as text (class labels by name)."""
    read_rows: int
    """Rows the label counts cover: the whole split, or its first file."""
    label_counts: tuple[tuple[str, int], ...]
    text_column: str | None
    label_column: str | None
    files_read: int
    files_total: int
    columns: tuple[str, ...] = ()


def preview_split(files, split: str, *, limit: int = 5, text_column: str | None = None,
                  label_column: str | None = None) -> HubPreview:
    """Features, split sizes, first rows and label counts of `split` of a fetched dataset
    (an engine.data.hub.fetch.DatasetFiles; a preview fetches the first file of a split)."""
    from engine.data.reader import _guess, cell_text

    paths = files.splits[split]
    ds = open_split(paths, files.where(split))
    columns = list(ds.column_names)
    if text_column is not None:
        require_column(ds, files.where(split), text_column, "text_column")
    if label_column is not None:
        require_column(ds, files.where(split), label_column, "label_column")
    text = text_column or _guess(columns, TEXT_NAMES)
    label = label_column or _guess(columns, LABEL_NAMES)
    names = {c: class_names(ds.features[c]) for c in columns}
    head = ds.select(range(min(limit, len(ds)))).to_dict()
    rows = tuple(tuple(_cell(head[c][i], names[c], cell_text) for c in columns)
                 for i in range(len(head[columns[0]]) if columns else 0))
    counts = label_counts(ds, label, names.get(label)) if label else []
    sizes: dict[str, int | None] = {s: None for s in files.all_splits}
    sizes.update(files.split_sizes())
    more = files.more_files.get(split, 0)
    if sizes.get(split) is None and not more:
        sizes[split] = len(ds)
    return HubPreview(
        dataset=f"hf:{files.repo}", sha=files.sha, subset=files.subset,
        subsets=files.subsets, split=split,
        features=tuple((c, _feature_text(ds.features[c])) for c in columns),
        split_rows=sizes, rows=rows, read_rows=len(ds), label_counts=tuple(counts),
        text_column=text, label_column=label, files_read=len(paths),
        files_total=len(paths) + more, columns=tuple(columns),
    )


def _cell(value, names: tuple[str, ...] | None, cell_text) -> str:
    if names is not None:
        if isinstance(value, int) and 0 <= value < len(names):
            return names[value]
        if isinstance(value, list):
            value = [names[v] if isinstance(v, int) and 0 <= v < len(names) else v
                     for v in value]
    return cell_text(value)


def _feature_text(feature) -> str:
    names = class_names(feature)
    if names is not None:
        shown = ", ".join(names[:10]) + (f", +{len(names) - 10} more" if len(names) > 10 else "")
        return f"class_label({shown})"
    dtype = getattr(feature, "dtype", None)
    if isinstance(dtype, str) and dtype != "list":
        return dtype
    return type(feature).__name__
