"""Caches kept on disk as entries used most recently first: marking a use, pruning the rest.

One rule for every cache hubtune keeps between runs (local files' Arrow tables in
engine/data/files.py, tokenised data sets in engine/training/data_cache.py): an entry's
modification time is its last use, the `keep` most recently used entries stay, fewer
when together they hold more than `max_bytes`, and the newest always stays. An entry is
a file or a folder (its size the sum of its files'). Pruning never fails: an entry
another process removed first, or one that cannot be removed, is passed over; a
process that has an entry's file memory-mapped keeps reading it (a map outlives the
name). Plain Python; reads nothing else of hubtune.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path


def touch(entry: Path) -> None:
    """Mark `entry` as just used, so pruning keeps it longest."""
    try:
        os.utime(entry)
    except OSError:  # a read-only cache still serves its entries
        pass


def prune(entries: Iterable[Path], keep: int, max_bytes: int) -> None:
    """Keep the `keep` most recently used of `entries`, fewer if they hold over
    `max_bytes` (the newest always stays); remove the others."""
    found = []
    for entry in entries:
        try:
            st = entry.stat()
            size = size_of(entry)
        except FileNotFoundError:  # another process pruned it first
            continue
        found.append((st.st_mtime, size, entry))
    total = 0
    for i, (_, size, entry) in enumerate(sorted(found, key=lambda e: e[0], reverse=True)):
        total += size
        if i >= keep or (i > 0 and total > max_bytes):
            remove(entry)


def remove(entry: Path) -> None:
    """Delete a file or a folder entry, whatever of it is still there."""
    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def size_of(entry: Path) -> int:
    """The bytes a file holds, or the files in a folder."""
    if not entry.is_dir():
        return entry.stat().st_size
    total = 0
    for path in entry.rglob("*"):
        try:
            total += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:
            continue
    return total
