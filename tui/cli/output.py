"""How the CLI prints: untrusted text made safe, --json that is always valid JSON, and
OSErrors as one sentence. Imports neither textual nor torch."""

from __future__ import annotations

import json

import click

from tui.safe_text import printable


def echo(text: object = "", *, err: bool = False) -> None:
    """Print a line that may quote untrusted text (names, notes, data cells, hub fields):
    control characters and escape sequences are shown as visible escapes, never sent
    to the terminal. Fields inside tables go through `cut`, which also escapes newlines."""
    click.echo(printable(text, multiline=True), err=err)


def cut(text: object, width: int) -> str:
    """One table cell: a single line (newlines shown as \\n) of at most `width` characters."""
    return printable(text, limit=width)


def dump_json(data: object) -> str:
    """--json output: valid JSON whatever the data holds. NaN and infinities (a diverged
    loss) become null, since JSON has no such numbers; control characters are escaped."""
    return json.dumps(_finite(data), indent=2, allow_nan=False)


def _finite(value: object) -> object:
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def os_error_sentence(exc: OSError) -> str:
    """An OSError a user can act on, in one sentence (a full disk, a read-only folder...)."""
    import errno

    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"The disk is full (writing{where}); free some space and try again."
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (f"Permission denied for{where or ' a file'}; check the folder's permissions "
                "(HUBTUNE_HOME, HF_HOME) or choose another path.")
    return f"Cannot use{where or ' a file'}: {exc.strerror or exc}."


def cells(text: str) -> int:
    """Terminal columns `text` takes: East Asian wide characters two, combining marks
    none (len() would misalign a table holding them)."""
    import unicodedata

    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, width: int, *, right: bool = False) -> str:
    """`text` padded with spaces to `width` terminal columns (to the left if `right`)."""
    fill = " " * max(0, width - cells(text))
    return fill + text if right else text + fill


def table(rows: list[list[str]], right: tuple[bool, ...] = ()) -> list[str]:
    """Rows of cells as aligned lines: each column as wide as its widest cell (in terminal
    columns), two spaces apart; `right[i]` right-aligns column i."""
    if not rows:
        return []
    widths = [max(cells(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(pad(c, w, right=i < len(right) and right[i])
                      for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
            for row in rows]


def token_stats_json(stats, max_length: int) -> dict:
    """`data preview --json`'s token statistics (engine.modeling.lengths.LengthStats), for
    files and hub datasets alike."""
    return {"sampled": stats.sampled, "mean": round(stats.mean, 2), "p50": stats.p50,
            "p95": stats.p95, "p99": stats.p99, "max": stats.longest,
            "model_limit": stats.model_limit, "suggested_max_length": stats.suggested,
            "cut_at_max_length": round(stats.cut_share(max_length), 5)}
