"""Untrusted text made safe to print: the one place control characters are defused.

Run names, tags, notes, CSV headers and cells, hub fields, model cards and error
messages quoting any of them may hold escape sequences that retitle, clear or
recolour a terminal, or a newline that fakes a table row. Everything the CLI
prints and the TUI shows goes through `printable` first. Plain stdlib: no
textual, no rich, no torch, so the CLI can import it at start-up.
"""

from __future__ import annotations

import re

_BIDI_AND_SEPARATORS = "\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff"
_UNSAFE_LINE = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}]")
"""C0 and C1 controls (ESC, CSI, BEL, CR, newline, ...), DEL, bidi overrides that reorder
what is shown, line and paragraph separators, and a stray byte-order mark."""
_UNSAFE_BLOCK = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_BIDI_AND_SEPARATORS}]")
"""The same, but a newline is kept (notes, model cards, multi-line messages)."""


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch == "\t":
        return " "
    if ch in "\n\r":
        return "\\n" if ch == "\n" else "\\r"
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(text: object, *, multiline: bool = False, limit: int | None = None) -> str:
    """`text` with every control character shown as a visible escape (`\\x1b`).

    Single-line text (the default) also escapes newlines, so a value can never
    start a new row of a table; a tab becomes a space. `limit` cuts the result
    to that many characters with an ellipsis.
    """
    s = "" if text is None else str(text)
    pattern = _UNSAFE_BLOCK if multiline else _UNSAFE_LINE
    if pattern.search(s):
        s = pattern.sub(_escape, s)
    if limit is not None and len(s) > limit:
        s = s[: max(limit - 1, 0)] + "…"
    return s


def has_control(text: str) -> bool:
    """Whether `text` holds anything `printable` would escape (newlines included)."""
    return _UNSAFE_LINE.search(text) is not None
