"""The label rules for data in Arrow (a `datasets.Dataset`), computed by Arrow.

What `check_labels` (engine/data/reader.py) judges a preview's pandas column by,
here over a memory-mapped column without turning its rows into Python objects:
empty cells (null, NaN, blank) are left out and counted with their rows, labels
that differ only by spaces are read as one, labels that differ only by case stay
separate classes and are warned about; class labels are names or whole numbers,
one kind a column, and not a score per row; regression labels are numbers. Only
the distinct values of a column reach Python, so a column of millions of rows
costs what its few labels cost. Row numbers in messages are 1-based among the
table's data rows (header excluded), as the file reader has always written them.

Every problem is the `DataError` sentence the file reader wrote before it read
through `datasets`. Imports neither torch nor textual.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from engine.core.errors import DataError
from engine.data.reader import LabelReport, case_twin, label_report, label_text


def label_set(value) -> set[str]:
    """The labels of a multi-label cell: a list, or text split on | ; or ,."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple, set)):
        return {label_text(v) for v in value}
    text = label_text(value)
    if text.startswith("["):
        import ast

        try:
            return {label_text(v) for v in ast.literal_eval(text)}
        except (ValueError, SyntaxError):
            pass
    return {part.strip() for part in re.split(r"[|;,]", text) if part.strip()}


def _natural(name: str):
    return (0, int(name), "") if name.lstrip("-").isdigit() else (1, 0, name)


class Cells:
    """One column of a `datasets.Dataset` as Arrow: its cells, their distinct values and
    the rows that hold them. A column `datasets` could give no single type (a JSON
    column mixing numbers and names) is kept as JSON text; values come back decoded."""

    def __init__(self, ds, name: str, rows=None) -> None:
        """`rows`: only these rows of `ds` (numpy indices), taken by Arrow; a selection
        (`ds.select`) would hand its column over as a Python list of row numbers."""
        import pyarrow as pa

        # A dataset already in Arrow format is read as is: `with_format` copies its info.
        col = (ds if ds.format["type"] == "arrow" else ds.with_format("arrow"))[name]
        if rows is not None and len(rows) != len(col):
            col = take(col, rows)
        self.json = getattr(col.type, "extension_name", "") == "arrow.json"
        if self.json:
            col = pa.chunked_array([c.storage for c in col.chunks], type=col.type.storage_type)
        self.col = col

    def decode(self, raw):
        import json

        return json.loads(raw) if self.json and raw is not None else raw

    def is_list(self) -> bool:
        import pyarrow as pa

        kind = self.col.type
        return pa.types.is_list(kind) or pa.types.is_large_list(kind) \
            or pa.types.is_fixed_size_list(kind)

    def distinct(self) -> list[tuple[object, int, object]]:
        """(value, rows, value as stored) of each distinct value, in order of first
        appearance; list cells' values counted one by one."""
        import pyarrow.compute as pc

        col = pc.list_flatten(self.col) if self.is_list() else self.col
        return [(self.decode(e["values"]), e["counts"], e["values"])
                for e in pc.value_counts(col).to_pylist()]

    def missing(self):
        """Per row, whether a label cell is empty (null, NaN, or only whitespace): numpy
        bools."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        col, kind = self.col, self.col.type
        missing = pc.is_null(col, nan_is_null=pa.types.is_floating(kind))
        if self.json:
            blank = [raw for value, _, raw in self.distinct()
                     if raw is not None and not _present(value)]
            if blank:
                missing = pc.or_kleene(missing, pc.is_in(col, value_set=pa.array(
                    blank, type=kind)))
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            missing = pc.or_kleene(missing, pc.equal(pc.utf8_trim_whitespace(col), ""))
        return np.asarray(pc.fill_null(missing, True).to_numpy(zero_copy_only=False),
                          dtype=bool)

    def first_row(self, raws: Sequence) -> int:
        """The 0-based row of the first cell holding one of the stored values `raws`."""
        import pyarrow as pa
        import pyarrow.compute as pc

        found = pc.is_in(self.col, value_set=pa.array(list(raws), type=self.col.type))
        return int(pc.indices_nonzero(pc.fill_null(found, False))[0].as_py())

    def first_valid(self) -> int:
        import pyarrow.compute as pc

        return int(pc.indices_nonzero(pc.is_valid(self.col))[0].as_py())

    def value(self, row: int):
        return self.decode(self.col[row].as_py())

    def values(self) -> list:
        """Every cell as a Python value (what a batch of a `datasets` map holds)."""
        return [self.decode(v) for v in self.col.to_pylist()] if self.json \
            else self.col.to_pylist()


def take(col, rows):
    """`rows` (sorted numpy indices) of a ChunkedArray, taken chunk by chunk: Arrow's own
    `take` on a chunked array first joins the chunks, a copy of the whole column."""
    import numpy as np
    import pyarrow as pa

    pieces, start = [], 0
    for chunk in col.chunks:
        lo, hi = np.searchsorted(rows, [start, start + len(chunk)])
        if hi > lo:
            pieces.append(chunk.take(pa.array(rows[lo:hi] - start)))
        start += len(chunk)
    return pa.chunked_array(pieces, type=col.type)


def _present(value) -> bool:
    from engine.data.reader import is_missing_label

    return not is_missing_label(value)


def _names(value, multi: bool) -> list[str]:
    """The label names a cell holds, unstripped (as `check_labels` counts them)."""
    if multi and isinstance(value, str):
        return sorted(label_set(value))
    return [str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)]


def report_labels(ds, column_name: str, *, multi: bool = False) -> tuple[LabelReport, object]:
    """(`check_labels`' report, the rows whose label is empty as numpy bools)."""
    import numpy as np

    cells = Cells(ds, column_name)
    missing = cells.missing()
    raw: Counter[str] = Counter()
    for value, n, _ in cells.distinct():
        if _present(value):
            for name in _names(value, multi):
                if name.strip():
                    raw[name] += n
    rows = (np.flatnonzero(missing) + 1).tolist()
    return label_report(column_name, rows, raw), missing


def _is_number(value) -> bool:
    """A number, or text that reads as one ('3', '0.5'): what a numeric label looks like."""
    import numbers

    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def check_class_cells(ds, where, column_name: str) -> None:
    """Class labels that are names or whole numbers, one kind in a column (empty cells
    aside), and not a distinct decimal score per row."""
    cells = Cells(ds, column_name)
    if cells.is_list():
        row = cells.first_valid()
        raise DataError(
            f"{where} holds a list in its label column {column_name!r} (row {row + 1} has "
            f"{_short(cells.value(row))}); for several labels per row use head.task "
            "multi-label-classification.")
    values = [(v, n, raw) for v, n, raw in cells.distinct() if _present(v)]
    kinds: dict[bool, list] = {}
    for value, _, raw in values:
        kinds.setdefault(_is_number(value), []).append(raw)
    if len(kinds) == 2:
        n_row, t_row = cells.first_row(kinds[True]), cells.first_row(kinds[False])
        raise DataError(
            f"{where} mixes numbers and names in its label column {column_name!r} (row "
            f"{n_row + 1} has {cells.value(n_row)!r}, row {t_row + 1} has "
            f"{cells.value(t_row)!r}); use one kind of label for every row.")
    decimals = [raw for v, _, raw in values if _is_number(v) and not float(v).is_integer()]
    count = len({label_text(v) for v, _, _ in values})
    rows = sum(n for _, n, _ in values)
    # A few decimal classes (star ratings 0.5 to 5) are classes; a value per row is a score.
    if decimals and count > rows / 2:
        row = cells.first_row(decimals)
        raise DataError(
            f"{where} holds decimal numbers in its label column {column_name!r} (row "
            f"{row + 1} has {cells.value(row)!r}; {count} different values in {rows} rows): "
            "scores, not classes; use head.task regression to predict a number, or give "
            "each row a class.")


def check_numbers(ds, where, column_name: str) -> None:
    """Regression targets: every present cell a number (or text that reads as one)."""
    import pyarrow as pa

    cells = Cells(ds, column_name)
    if pa.types.is_integer(cells.col.type) or pa.types.is_floating(cells.col.type):
        return
    bad = [raw for v, _, raw in cells.distinct() if _present(v) and not _is_number(v)]
    if bad:
        row = cells.first_row(bad)
        raise DataError(
            f"Regression needs numbers in {column_name!r} of {where}, but row {row + 1} "
            f"holds {cells.value(row)!r}; fix that row or pick the right label column.")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def class_names(ds, where, column_name: str, rows=None) -> tuple[tuple[str, ...], dict]:
    """(class names in natural order, each present cell value -> class index) of a
    split's labels (`rows` of `ds`, or all); fewer than two names is a DataError."""
    by_text: dict[str, list] = {}
    for value, _, _ in Cells(ds, column_name, rows).distinct():
        if _present(value):
            by_text.setdefault(label_text(value), []).append(value)
    names = tuple(sorted(by_text, key=_natural))
    if len(names) < 2:
        raise DataError(f"{where} has only one label ({names[0]!r}) in {column_name!r}; "
                        "classification needs at least two.")
    index = {n: i for i, n in enumerate(names)}
    return names, {v: index[t] for t, vs in by_text.items() for v in vs}


def multi_names(ds, where, column_name: str, rows=None) -> tuple[str, ...]:
    """The label names of a multi-label split (`rows` of `ds`, or all), in natural order
    (at least two)."""
    found: set[str] = set()
    for value, _, _ in Cells(ds, column_name, rows).distinct():
        if _present(value):
            found |= label_set(value)
    names = tuple(sorted(found, key=_natural))
    if len(names) < 2:
        raise DataError(f"{where} has fewer than two labels in {column_name!r}; "
                        "multi-label classification needs at least two.")
    return names


def check_seen(ds, column_name: str, names: tuple[str, ...], *, multi: bool,
               rows=None) -> dict:
    """Validation labels (`rows` of `ds`, or all) that the training labels `names` cover,
    else the DataError that names the first unseen one; returns each validation cell
    value -> class index."""
    index = {n: i for i, n in enumerate(names)}
    values = [v for v, _, _ in Cells(ds, column_name, rows).distinct() if _present(v)]
    if multi:
        unseen = sorted(set().union(*(label_set(v) for v in values)) - set(names))
        if unseen:
            raise DataError(f"Validation labels {', '.join(unseen)} never appear in the "
                            f"training data ({', '.join(names)}){twin_hint(unseen, names)}.")
        return {}
    for value in values:
        text = label_text(value)
        if text not in index:
            raise DataError(
                f"Validation label {text!r} never appears in the training data "
                f"({', '.join(names)}){twin_hint([text], names)}; fix the label or add "
                "training examples of it.")
    return {v: index[label_text(v)] for v in values}


def twin_hint(labels, names) -> str:
    """" (the training data has 'positive', ...)" when a label differs only by case from
    one of `names`; else ''."""
    for label in labels:
        twin = case_twin(label, names)
        if twin is not None:
            return f" (the training data has {twin!r}, which differs only by case)"
    return ""
