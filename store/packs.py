"""Packed metric series: a batch of (step, value) points as two machine-order arrays.

sqlite3 builds a Python tuple per fetched row, which dominates reading a
long series; a pack is one row holding many points, turned back into lists
by `array.frombytes` + `tolist` at C speed.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

PACK_ROWS = 4096
"""Points per pack written by the migration's backfill (live batches are packed whole)."""


def pack(points: Sequence[tuple[int, float]]) -> tuple[int, int, int, bytes, bytes] | None:
    """(first_step, last_step, n, steps, values) of points sorted by step; None when a value
    is not a number (the series is then read from the plain rows)."""
    ordered = sorted(points, key=lambda p: p[0])
    try:
        steps = array("q", [p[0] for p in ordered])
        values = array("d", [p[1] for p in ordered])
    except (TypeError, OverflowError):
        return None
    return ordered[0][0], ordered[-1][0], len(ordered), steps.tobytes(), values.tobytes()


def unpack(rows: Iterable[tuple[bytes, bytes]]) -> tuple[list[int], list[float]]:
    """Concatenate packs (already in first_step order) into two lists."""
    steps, values = array("q"), array("d")
    for s, v in rows:
        steps.frombytes(s)
        values.frombytes(v)
    return steps.tolist(), values.tolist()
