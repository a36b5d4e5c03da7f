"""Pre-processed data kept between runs: tokenise a file once, not every run.

A run's data (tokenised splits, label maps, what evaluation needs) is a pure
function of the data files, the data and head settings, the seed that splits
them, the tokenizer and the code that pre-processes. The cache key is a hash
of all of those: file stamps (path, size, modification time), the config
sections, the tokenizer's fingerprint as the `datasets` library computes it
for its own map cache, and the source of the pre-processing modules, so an
edit to a file, a setting, the vocabulary or hubtune itself misses the cache
rather than reading stale data.

Entries are pickles under `<data dir>/cache/data/`, written atomically (a
crash leaves the old entry or none), read back in a fraction of the time
tokenising takes, and pruned to the `MAX_ENTRIES` most recently used (fewer
when they pass `MAX_BYTES`). A damaged entry is deleted and rebuilt.
`data.cache: false` turns the cache off for a run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from engine.core.config import RunConfig, is_hub_data, parse_hub_data
from engine.core.errors import HubtuneError

FORMAT = 1
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


def _stamp(path: Path | None) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, st.st_mtime_ns]


def _code_hash(task) -> str:
    """The source of the modules that turn files into examples."""
    import engine.data.examples
    import engine.data.file_tokens
    import engine.data.files
    import engine.data.hub.rows
    import engine.data.hub.text
    import engine.data.labels
    import engine.data.loading
    import engine.data.reader
    import engine.data.text_splits
    import engine.tasks.base
    import engine.tasks.hub_qa
    import engine.tasks.hub_readers

    digest = hashlib.sha256()
    # The hub readers too (hub_text imports engine.data.hub.splits, hub_readers hub_data): a
    # task's own module is not the only one that turns its hub rows into examples.
    for module in (engine.data.reader, engine.data.loading, engine.data.files,
                   engine.data.labels, engine.data.text_splits, engine.data.examples,
                   engine.data.file_tokens,
                   engine.tasks.base,
                   engine.data.hub.splits, engine.data.hub.text, engine.data.hub.rows,
                   engine.tasks.hub_data, engine.tasks.hub_readers, engine.tasks.hub_qa,
                   sys.modules[type(task).__module__]):
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
    path = cache_dir() / f"{key}.pkl"
    try:
        with open(path, "rb") as fh:
            data = pickle.load(fh)
    except FileNotFoundError:
        pass
    except Exception:  # a damaged or unreadable entry: drop it and build afresh
        path.unlink(missing_ok=True)
    else:
        try:
            os.utime(path)  # the newest use survives pruning
        except OSError:  # a read-only cache still serves its entries
            pass
        return data, True
    data = load()
    _write(path, data)
    return data, False


def _write(path: Path, data) -> None:
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        # A cache that cannot be written (full disk, read-only home, an
        # unpicklable field) only costs the next run its tokenising time.
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        return
    prune(path.parent)


def prune(folder: Path, keep: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
    """Keep the `keep` most recently used entries, fewer if they hold over `max_bytes`
    (the newest entry always stays)."""
    entries = []
    for entry in folder.glob("*.pkl"):
        try:
            st = entry.stat()
        except FileNotFoundError:  # another process pruned it first
            continue
        entries.append((st.st_mtime, st.st_size, entry))
    total = 0
    for i, (_, size, entry) in enumerate(sorted(entries, key=lambda e: e[0], reverse=True)):
        total += size
        if i >= keep or (i > 0 and total > max_bytes):
            entry.unlink(missing_ok=True)


def clear() -> tuple[int, int]:
    """Delete every entry: the tokenised data sets, the Arrow tables of local files and
    their token files (engine.data.files), and the audit's features; returns (entries,
    bytes) freed."""
    from engine.data.files import cache_dir as tables_dir

    count = freed = 0
    folder = cache_dir()
    entries = [*folder.glob("*.pkl"), *folder.glob(".tmp-*")] if folder.exists() else []
    for other in (tables_dir(), folder.parent / "audit"):
        entries += [p for p in other.rglob("*") if p.is_file()] if other.exists() else []
    for entry in entries:
        try:
            freed += entry.stat().st_size
            entry.unlink()
            count += 1
        except FileNotFoundError:
            continue
    return count, freed
