"""Hub dataset splits for the tasks whose rows are not one text and one label (token
classification, seq2seq, language models, images): the shared reading steps.

A task's reader names its columns (`pick`) and checks or cleans a split (`check`);
`open_splits` opens the training split (a seeded `data.limit` sample where asked),
applies both, and finds the validation split the way the sequence heads do: the
split the config or the dataset has, with the same columns, else a seeded
`data.validation_split` of the training rows. Everything stays a `datasets.Dataset`
(Arrow, memory-mapped where the split is on disk); checks are Arrow compute, so row
numbers in messages are the split's own (a `data.limit` sample's where there is
one). Imports neither torch nor textual.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.core.config import RunConfig
from engine.core.errors import DataError
from engine.data.hub.splits import require_column
from engine.data.hub.text import HubSplit, split_rows

Pick = Callable[[object, str], tuple[dict[str, str], list[str]]]
"""(split, where) -> ({data.KEY: column}, notes): the columns a task reads."""
Check = Callable[[object, str, dict[str, str]], tuple[object, list[str]]]
"""(split, where, columns) -> (split, warnings): a task's row checks, rows left out."""


@dataclass
class OpenSplits:
    """Both splits of a hub dataset, checked, with where each came from."""

    train: object
    validation: object
    train_where: str
    val_where: str
    columns: dict[str, str]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def open_splits(cfg: RunConfig, train: HubSplit, validation: HubSplit | None, pick: Pick,
                check: Check, split: Callable = split_rows) -> OpenSplits:
    """The training and validation rows of a hub dataset, columns picked and rows checked
    (the training rows before any validation rows are split off them, by
    `split(rows, fraction, seed)`: seeded and random unless the task says otherwise)."""
    spec = cfg.data
    train_ds = train.open(limit=spec.limit, seed=cfg.train.seed)
    columns, notes = pick(train_ds, train.where)
    train_ds, warnings = check(train_ds, train.where, columns)
    if validation is not None:
        val_ds = validation.open(seed=cfg.train.seed)
        for key, column in columns.items():
            require_column(val_ds, validation.where, column, key)
        val_ds, more = check(val_ds, validation.where, columns)
        return OpenSplits(train_ds, val_ds, train.where, validation.where, columns, notes,
                          warnings + more)
    if spec.validation_split <= 0:
        raise DataError("Give data.validation or a data.validation_split above 0.")
    train_ds, val_ds = split(train_ds, spec.validation_split, cfg.train.seed)
    notes.append(f"Validating on {len(val_ds):,} rows split off {train.where} "
                 f"(data.validation_split {spec.validation_split:g}, seed {cfg.train.seed})")
    return OpenSplits(train_ds, val_ds, train.where, train.where, columns, notes, warnings)


def arrow_column(ds, column: str):
    """One column of a split as a pyarrow ChunkedArray (a selection's rows only)."""
    return ds.with_format("arrow")[column]


def check_list_column(ds, where: str, column: str, key: str, what: str) -> None:
    """A column holding a list per row (words, tags), else a one-sentence DataError."""
    import pyarrow as pa

    kind = ds.data.schema.field(column).type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)
            or pa.types.is_fixed_size_list(kind)):
        raise DataError(f"{where} holds {kind} values, not lists of {what}, in its column "
                        f"{column!r} (data.{key}); set data.{key} to the column with a list "
                        f"of {what} per row.")


def check_string_column(ds, where: str, column: str, key: str, what: str = "text") -> None:
    """A column of text (string values), else a one-sentence DataError."""
    import pyarrow as pa

    kind = ds.data.schema.field(column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"{where} holds {kind} values, not {what}, in its column {column!r} "
                        f"(data.{key}); set data.{key} to the column that holds the {what}.")


def keep_rows(ds, drop, where: str, what: str) -> tuple[object, str | None]:
    """`ds` without the rows where the boolean array `drop` is true, and a warning
    counting them ('3 rows of X have no words; they are left out.')."""
    import numpy as np

    drop = np.asarray(drop, dtype=bool)
    n = int(drop.sum())
    if n == 0:
        return ds, None
    many = n != 1
    return ds.select(np.flatnonzero(~drop)), (
        f"{n} row{'s' if many else ''} of {where} {'have' if many else 'has'} {what}; "
        f"{'they are' if many else 'it is'} left out.")


def blank(column):
    """Per row, whether a text column's cell is null or only whitespace (numpy bools)."""
    import numpy as np
    import pyarrow.compute as pc

    empty = pc.or_kleene(pc.is_null(column),
                         pc.equal(pc.utf8_trim_whitespace(column), ""))
    return np.asarray(pc.fill_null(empty, True).to_numpy(zero_copy_only=False), dtype=bool)
