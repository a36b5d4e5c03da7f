"""A local data file's rows as Python values, over the one reader's Arrow table
(engine/data/files.py): what the heads beyond the sequence family train on, and what
the preview, batch prediction and the audit read.

`read_rows` opens a CSV, TSV, JSONL, JSON array or Parquet file with `open_table`: the
same formats, header rules, encodings and one-sentence `DataError`s as every other
reader, and the table `open_file` gives training, without importing `datasets` (the
preview reads through here from a thread). `FileRows` is a selection of that file's
rows, in a chosen order, over its memory-mapped Arrow table: a column by name comes
out as Python values (a missing cell is None; a column of mixed kinds, kept as JSON
text, decoded), and `index` holds each row's 0-based number in its file for messages
and review. It offers the few table operations the readers use with pandas' meaning
(`columns`, `index`, `rows[column]`, `rows[mask]`, `iloc[positions]`, `head(n)`,
`sample(n, random_state=seed)`), so a split or a sample picks the same rows a pandas
table would; `frame()` is the rows as a pandas table for a writer (batch prediction's
output, the audit's cleaned copy). Torch-free; never reaches the network."""

from __future__ import annotations

from pathlib import Path


def read_rows(path: Path, *, encoding: str = "utf-8", role: str = "training",
              conll: bool = False) -> FileRows:
    """Every row of a data file; `role` (training, validation, data) names it in messages;
    `conll` reads CoNLL text too (tokens and tags columns)."""
    from engine.data.files import open_table

    return FileRows(open_table(path, encoding=encoding, role=role, conll=conll))


class FileRows:
    """Rows of one file's table, in order: its Arrow table (a `pyarrow.Table`), or
    columns already turned into Python values (a dict of equal-length lists: a SQuAD
    file's questions, say), row `i` of which is the file's row `i`."""

    def __init__(self, ds, rows=None) -> None:
        import numpy as np

        self.ds = ds
        self.rows = np.arange(_length(ds)) if rows is None else \
            np.asarray(rows, dtype=np.int64)

    @property
    def columns(self) -> list[str]:
        return list(self.ds) if isinstance(self.ds, dict) else list(self.ds.column_names)

    def frame(self):
        """These rows as a pandas table indexed by their rows in the file (each cell as
        `rows[column]` gives it): what batch prediction adds its columns to and writes
        out."""
        import pandas as pd

        return pd.DataFrame({c: self._series(c) for c in self.columns}, index=self.rows,
                            columns=self.columns)

    def _series(self, name: str):
        """A column's cells for `frame`: whole numbers with missing cells as pandas'
        nullable integers (a list of them would turn float, and 3 be written 3.0)."""
        import pandas as pd
        import pyarrow as pa

        values = self.column(name)
        if isinstance(self.ds, dict) or not pa.types.is_integer(self.ds.schema.field(
                name).type):
            return values
        kind = self.ds.schema.field(name).type
        return pd.array(values, dtype=f"{'U' if pa.types.is_unsigned_integer(kind) else ''}"
                                      f"Int{kind.bit_width}")

    @property
    def index(self):
        """Each row's 0-based number in its file (numpy ints)."""
        return self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        """A column's values (`rows["text"]`), or the rows a boolean mask keeps."""
        if isinstance(key, str):
            return self.column(key)
        import numpy as np

        return FileRows(self.ds, self.rows[np.asarray(key, dtype=bool)])

    def column(self, name: str) -> list:
        import pyarrow as pa

        if isinstance(self.ds, dict):
            values = self.ds[name]
            return list(values) if self._whole() else [values[i] for i in self.rows]
        column = self.ds.column(name)
        if not self._whole():
            column = column.take(pa.array(self.rows))
        return python_values(column)

    def _whole(self) -> bool:
        import numpy as np

        n = _length(self.ds)
        return len(self.rows) == n and bool(np.array_equal(self.rows, np.arange(n)))

    @property
    def iloc(self) -> _Positions:
        """`rows.iloc[positions]`: the rows at these positions of this selection."""
        return _Positions(self)

    def head(self, n: int) -> FileRows:
        """The first `n` rows."""
        return FileRows(self.ds, self.rows[:n])

    def sample(self, n: int, random_state: int) -> FileRows:
        """`n` rows drawn as pandas' `DataFrame.sample(n, random_state=seed)` draws them
        (numpy's RandomState(seed).choice, in the drawn order)."""
        import numpy as np

        picks = np.random.RandomState(random_state).choice(len(self.rows), size=n,
                                                           replace=False)
        return FileRows(self.ds, self.rows[picks])


def _length(ds) -> int:
    return len(next(iter(ds.values()), ())) if isinstance(ds, dict) else len(ds)


class _Positions:
    def __init__(self, rows: FileRows) -> None:
        self._rows = rows

    def __getitem__(self, positions) -> FileRows:
        import numpy as np

        rows = self._rows
        return FileRows(rows.ds, rows.rows[np.asarray(positions, dtype=np.int64)])


def python_values(column) -> list:
    """An Arrow column's cells as Python values; JSON text (a column of mixed kinds)
    decoded."""
    import json

    import pyarrow as pa

    if getattr(column.type, "extension_name", "") != "arrow.json":
        return column.to_pylist()
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    return [None if v is None else json.loads(v) for chunk in chunks
            for v in chunk.storage.to_pylist()]
