"""What a text column must hold, and how much of a cell reaches the tokenizer.

One rule for every source, so a file and a hub dataset holding the same data are
read the same way: a text column holds text, one per row (not lists or mappings),
some row is not empty, and not every value is a number (an id or score column
picked by mistake). `check_text_values` judges a column of Python values (a file's
table); `check_arrow_text` judges an Arrow column (hub data, millions of rows)
without turning it into Python objects. Both raise the same `DataError` sentences.

`cut_texts` is the other half: a tokenizer builds every token of a cell before
truncation throws most away, so one 300 MB cell asks it for gigabytes. A cell is
cut to what `max_length` tokens can possibly need first, a bound generous enough
that no ordinary text changes its tokens.

Torch-free (pandas and pyarrow types are only inspected).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

from engine.core.errors import DataError

CHARS_PER_TOKEN = 32
"""The most characters one token of `max_length` is allowed to take when a cell is cut.
English runs about 4 characters a token; 32 leaves room for long words, URLs, code and
runs of spaces, so only a cell far longer than `max_length` could use is ever cut."""
MIN_CHARS = 4096
"""A cell of up to this many characters is never cut, whatever `max_length` is."""


def char_limit(max_length: int) -> int:
    """The characters of a cell that `max_length` tokens can need at most."""
    return max(MIN_CHARS, int(max_length) * CHARS_PER_TOKEN)


def cut_texts(texts: list | None, max_length: int | None) -> list | None:
    """`texts` with each over-long text cut to `char_limit(max_length)` characters (a
    list of words: at most `max_length` words, each cut alike); the list itself when
    nothing needs cutting."""
    if texts is None or not max_length:
        return texts
    limit = char_limit(max_length)
    if not any(_too_long(t, limit, max_length) for t in texts):
        return texts
    return [_cut(t, limit, max_length) for t in texts]


def _too_long(value, limit: int, max_length: int) -> bool:
    if isinstance(value, str):
        return len(value) > limit
    if isinstance(value, (list, tuple)):
        return len(value) > max_length or any(isinstance(w, str) and len(w) > limit
                                              for w in value)
    return False


def _cut(value, limit: int, max_length: int):
    if isinstance(value, str):
        return value[:limit]
    if isinstance(value, (list, tuple)):
        # Every word that is not blank is at least one token: more than max_length of
        # them can never be read. Blank words (no tokens) are kept in place.
        kept, words = [], 0
        for word in value:
            if words >= max_length:
                break
            kept.append(word[:limit] if isinstance(word, str) else word)
            words += not (isinstance(word, str) and not word.strip())
        return kept
    return value


# -- the text-column rule ------------------------------------------------------


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def lists_error(where, column: str, key: str, row: int, value) -> DataError:
    return DataError(
        f"{where} holds lists in its text column {column!r} (data.{key}) (row {row} has "
        f"{_short(value)}); a text column holds one text per row: join the parts into one "
        "text, or use head.task token-classification for words with a tag each.")


def empty_error(where, column: str, key: str) -> DataError:
    return DataError(f"{where} has no text in its column {column!r} (data.{key}): every row "
                     f"is empty; set data.{key} to the column that holds the text.")


def numbers_error(where, column: str, key: str, example) -> DataError:
    return DataError(f"{where} holds only numbers in its column {column!r} (data.{key}), "
                     f"e.g. {example!r}, not text; set data.{key} to the column that holds "
                     "the text.")


def _plain(value):
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def _as_container(value):
    """A list-like cell as a Python list/dict, else None (numpy arrays from Parquet)."""
    if isinstance(value, (list, tuple, dict, set)):
        return value
    if hasattr(value, "tolist") and not isinstance(value, str) and getattr(value, "ndim", 0):
        return value.tolist()
    return None


def _is_blank(value) -> bool:
    import math

    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def check_text_values(rows: Iterable[tuple[int, object]], where, column: str,
                      key: str) -> None:
    """The rule over `(row number, cell)` pairs of one text column (row numbers 1-based,
    as a message shows them)."""
    first_number = None
    texts = 0
    for row, value in rows:
        container = _as_container(value)
        if container is not None:
            raise lists_error(where, column, key, row, container)
        if _is_blank(value):
            continue
        if isinstance(value, numbers.Number) and not isinstance(value, bool):
            first_number = value if first_number is None else first_number
            continue
        texts += 1
    if texts == 0 and first_number is None:
        raise empty_error(where, column, key)
    if texts == 0:
        raise numbers_error(where, column, key, _plain(first_number))


def check_arrow_text(ds, where: str, column: str, key: str) -> None:
    """The rule for a `datasets.Dataset` column, by its Arrow type and Arrow compute."""
    import datasets
    import pyarrow as pa
    import pyarrow.compute as pc

    feature = ds.features[column]
    col = ds.data.column(column)
    kind = col.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_struct(kind) \
            or pa.types.is_fixed_size_list(kind) or pa.types.is_map(kind):
        present = pc.drop_null(col)
        example = present[0].as_py() if len(present) else []
        raise lists_error(where, column, key, _first_valid_row(col), example)
    if pa.types.is_null(kind) or col.null_count == len(col):
        raise empty_error(where, column, key)
    if isinstance(feature, datasets.ClassLabel):
        raise DataError(f"{where} holds class labels, not text, in its column {column!r} "
                        f"(data.{key}); set data.{key} to the column that holds the text.")
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        raise numbers_error(where, column, key, pc.drop_null(col)[0].as_py())
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"{where} holds {kind} values, not text, in its column {column!r} "
                        f"(data.{key}); set data.{key} to the column that holds the text.")
    # A chunk at a time, stopping at the first with text: trimming the whole column at
    # once would hold a copy of every text in memory.
    for chunk in col.chunks:
        if pc.any(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(chunk)), 0)).as_py():
            return
    raise empty_error(where, column, key)


def _first_valid_row(col) -> int:
    """The 1-based row of a column's first value that is not null."""
    import pyarrow.compute as pc

    valid = pc.indices_nonzero(pc.is_valid(col)) if hasattr(pc, "indices_nonzero") else None
    return int(valid[0].as_py()) + 1 if valid is not None and len(valid) else 1
