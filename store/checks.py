"""What a run's name, tags and notes may hold: text a terminal and a table can show."""

from __future__ import annotations

from collections.abc import Sequence

from store.errors import StoreError

MAX_NAME_CHARS = 200
MAX_TAG_CHARS = 64
MAX_TAGS = 32
MAX_NOTE_CHARS = 10_000


def check_name(name: str) -> str:
    """A run name a terminal and a table can show: one line, at most MAX_NAME_CHARS."""
    if len(name) > MAX_NAME_CHARS:
        raise StoreError(f"The run name is {len(name):,} characters long; "
                         f"keep it to {MAX_NAME_CHARS}.")
    _refuse_control("The run name", name)
    return name


def check_tags(tags: Sequence[str]) -> tuple[str, ...]:
    """Tags trimmed, each one line of at most MAX_TAG_CHARS, at most MAX_TAGS of them."""
    cleaned = tuple(t.strip() for t in tags if t.strip())
    if len(cleaned) > MAX_TAGS:
        raise StoreError(f"A run can have at most {MAX_TAGS} tags, got {len(cleaned)}.")
    for tag in cleaned:
        if len(tag) > MAX_TAG_CHARS:
            raise StoreError(f"The tag {tag[:20]!r}... is {len(tag)} characters long; "
                             f"keep tags to {MAX_TAG_CHARS}.")
        _refuse_control("A tag", tag)
    return cleaned


def check_note(note: str) -> str:
    """A note of at most MAX_NOTE_CHARS; newlines kept, other control characters refused."""
    if len(note) > MAX_NOTE_CHARS:
        raise StoreError(f"The note is {len(note):,} characters long; "
                         f"keep it to {MAX_NOTE_CHARS:,}.")
    if _has_control(note.replace("\n", "")):
        raise StoreError("The note holds a control character (an escape, tab or carriage "
                         "return); use plain text and newlines.")
    return note


def _refuse_control(what: str, text: str) -> None:
    if _has_control(text):
        raise StoreError(f"{what} holds a control character (a newline, tab or escape); "
                         "use plain text.")


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in text)
