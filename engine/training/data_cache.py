"""Pre-processed data kept between runs: tokenise a file once, not every run.

A run's data (tokenised splits, label maps, what evaluation needs) is a pure
function of the data files, the data and head settings, the seed that splits
them, the tokenizer and the code that pre-processes. The cache key is a hash
of all of those: each local file's content (its SHA-256, engine/data/fingerprint.py,
with its path, which the data's messages name), a hub dataset's commit, the config
sections, the tokenizer's fingerprint as the `datasets` library computes it for its
own map cache, and the source of the pre-processing modules, so an edit to a file,
a setting, the vocabulary or hubtune itself misses the cache rather than reading
stale data.

Entries are folders of Arrow files under `<data dir>/cache/data/`
(engine/training/data_arrow.py), written aside and renamed into place (a crash
leaves the old entry or none), memory-mapped when read back, and pruned to the
`MAX_ENTRIES` most recently used (fewer when they pass `MAX_BYTES`;
engine/core/cache_files.py). A damaged entry is deleted and rebuilt.
`data.cache: false` turns the cache off for a run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from engine.core import cache_files
from engine.core.config import RunConfig, is_hub_data, parse_hub_data
from engine.core.errors import HubtuneError

FORMAT = 2
"""Bumped when the layout of a cached entry changes."""
MAX_ENTRIES = 12
MAX_BYTES = 8 << 30
"""Older entries go once the cache holds more than this."""


def cache_dir() -> Path:
    from store.paths import data_dir

    return data_dir() / "cache" / "data"


def data_key(task, cfg: RunConfig, processor) -> str:
    """The hash that names a cache entry; any input that changes the data changes it."""
    from datasets.fingerprint import Hasher

    parts = {
        "format": FORMAT,
        "task": task.name,
        "data": dataclasses.asdict(cfg.data),
        "head": dataclasses.asdict(cfg.head),
        "model": cfg.model.id,
        "seed": cfg.train.seed,
        # A stream reads as many rows as the run takes.
        "stream": ([cfg.train.max_steps, cfg.train.batch_size, cfg.train.grad_accumulation]
                   if cfg.data.streaming else None),
        "files": [_hub_stamp(cfg, p) if is_hub_data(p) else _stamp(cfg.resolve(p))
                  for p in (cfg.data.train, cfg.data.validation) if p],
        "tokenizer": Hasher.hash(processor),
        "code": _code_hash(task),
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _hub_stamp(cfg: RunConfig, ref: str) -> list:
    """A hub dataset's stamp: the commit its revision resolves to (offline, the one the
    cache holds), so a new commit misses the cache and a re-run at the same one hits it."""
    from engine.data.hub.fetch import resolve_commit

    repo = parse_hub_data(ref).repo
    return [ref, cfg.data.subset, resolve_commit(repo, cfg.data.revision)]


def _stamp(path: Path) -> list:
    """A local file's stamp: where it is (its messages name it) and what it holds."""
    from engine.data.fingerprint import file_hash

    return [str(path.resolve()), file_hash(path)]


def _code_hash(task) -> str:
    """The source of the modules that turn files into examples."""
    import engine.data.examples
    import engine.data.file_rows
    import engine.data.file_tokens
    import engine.data.files
    import engine.data.formats
    import engine.data.hub.rows
    import engine.data.hub.text
    import engine.data.labels
    import engine.data.loading
    import engine.data.reader
    import engine.data.text_splits
    import engine.tasks.base
    import engine.tasks.hub_qa
    import engine.tasks.hub_readers
    import engine.training.data_arrow

    digest = hashlib.sha256()
    # The hub readers too (hub_text imports engine.data.hub.splits, hub_readers hub_data): a
    # task's own module is not the only one that turns its hub rows into examples.
    for module in (engine.data.reader, engine.data.loading, engine.data.files,
                   engine.data.labels, engine.data.text_splits, engine.data.examples,
                   engine.data.file_tokens, engine.data.file_rows, engine.data.formats,
                   engine.tasks.base,
                   engine.data.hub.splits, engine.data.hub.text, engine.data.hub.rows,
                   engine.tasks.hub_data, engine.tasks.hub_readers, engine.tasks.hub_qa,
                   engine.training.data_arrow, sys.modules[type(task).__module__]):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def load_cached(task, cfg: RunConfig, processor, load: Callable[[], object]):
    """`load()`'s result, from the cache when an entry for these inputs exists.

    Returns (data, hit). Image tasks are not cached: their examples are file
    paths, decoded per batch, so there is nothing costly to keep.
    """
    if not cfg.data.cache or task.vision:
        return load(), False
    try:
        key = data_key(task, cfg, processor)
    except (OSError, HubtuneError):  # a file vanished, a hub dataset cannot be resolved:
        return load(), False     # let the loader report it properly
    from engine.training import data_arrow

    entry = cache_dir() / key
    try:
        data = data_arrow.read_entry(entry)
    except FileNotFoundError:  # none, or a folder missing a file: built afresh
        cache_files.remove(entry)
    except Exception:  # a damaged or unreadable entry: drop it and build afresh
        cache_files.remove(entry)
    else:
        cache_files.touch(entry)  # the newest use survives pruning
        return data, True
    data = load()
    _write(entry, data)
    return data, False


def _write(entry: Path, data) -> None:
    """Write an entry aside and rename it into place; another process that wrote the same
    entry first keeps its own."""
    from engine.training.data_arrow import Uncacheable, write_entry

    partial = entry.with_name(f".tmp-{entry.name}.{os.getpid()}")
    try:
        partial.mkdir(parents=True)
        write_entry(partial, data)
        partial.rename(entry)
    except (OSError, Uncacheable, ValueError, TypeError):
        # A cache that cannot be written (full disk, read-only home, a field Arrow cannot
        # hold, a race lost to another process) only costs the next run its tokenising.
        cache_files.remove(partial)
        return
    prune(entry.parent)


def prune(folder: Path, keep: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
    """Keep the `keep` most recently used entries, fewer if they hold over `max_bytes`
    (the newest entry always stays); half-written ones are not entries."""
    cache_files.prune((p for p in folder.iterdir() if not p.name.startswith(".")), keep,
                      max_bytes)


def clear() -> tuple[int, int]:
    """Delete every entry: the tokenised data sets, the Arrow tables of local files and
    their token files (engine.data.files), the audit's features and the frozen-backbone
    features (engine.training.feature_cache); returns (entries, bytes) freed."""
    from engine.data.files import cache_dir as tables_dir

    count = freed = 0
    folder = cache_dir()
    # An entry is a folder (or an earlier version's pickle); a table or feature a file.
    entries = list(folder.iterdir()) if folder.exists() else []
    for other in (tables_dir(), folder.parent / "audit", folder.parent / "features"):
        entries += [p for p in other.rglob("*") if p.is_file()] if other.exists() else []
    for entry in entries:
        try:
            size = cache_files.size_of(entry)
        except FileNotFoundError:
            continue
        cache_files.remove(entry)
        freed += size
        count += 1
    return count, freed
