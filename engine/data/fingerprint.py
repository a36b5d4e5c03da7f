"""What a run's data files held when it trained, as a fingerprint review checks against.

Review (`hubtune runs errors`, `runs compare --examples`) re-reads a run's data to show
each stored result beside its input. A file edited since (a text corrected, two rows
swapped) can keep its row count and labels and still show inputs the run never saw;
its fingerprint cannot. Training records `data_record(cfg)` with the run (the summary's
`dataset`, where hub data records its commit), and review compares `fingerprint(cfg)`
with it before it shows anything.

A file's fingerprint is the SHA-256 of its bytes (of its size and evenly spaced
blocks beyond `FULL_HASH_BYTES`, where reading it all would cost minutes); an image
folder's is that of its listing (each file's path, size and modification time), since
reading every image would cost more than the training it checks. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from engine.core.config import RunConfig, is_hub_data

FULL_HASH_BYTES = 1 << 30
"""Files up to this size are hashed whole; larger ones by SAMPLES blocks and their size."""
SAMPLES = 64
BLOCK = 1 << 20
KIND = "content-sha256"
"""Names the fingerprint's recipe in the record, so a later recipe is not compared with it."""


def data_record(cfg: RunConfig) -> dict | None:
    """What a run records of its (local) data: the recipe, the fingerprint and each file's
    own; None for hub data (its commit is its record) or a file that cannot be read."""
    if is_hub_data(cfg.data.train):
        return None
    try:
        files = [{"path": str(p), "sha256": file_hash(p)} for p in _paths(cfg)]
    except OSError:
        return None  # the reader reports a missing file; review then falls back
    return {"kind": KIND, "fingerprint": _combine(files), "files": files}


def record_files(extra: dict, cfg: RunConfig) -> None:
    """Put `data_record(cfg)` in a run's TaskData.extra as its `dataset` (which the run's
    summary keeps), unless hub data recorded its own there (its commit)."""
    if "dataset" not in extra and (record := data_record(cfg)) is not None:
        extra["dataset"] = record


def changed_files(cfg: RunConfig, record: dict) -> list[str] | None:
    """The data files whose content differs from `record` (empty: none), or None when
    the record is not a fingerprint this code can check (an older run's, or none)."""
    if not isinstance(record, dict) or record.get("kind") != KIND:
        return None
    then = {f.get("path"): f.get("sha256") for f in record.get("files") or ()
            if isinstance(f, dict)}
    changed = []
    for path in _paths(cfg):
        try:
            now = _file_hash(path)
        except OSError:
            now = None
        if then.get(str(path)) != now:
            changed.append(str(path))
    return changed


def _paths(cfg: RunConfig) -> list[Path]:
    spec = cfg.data
    return [cfg.resolve(p) for p in (spec.train, spec.validation) if p]


def _combine(files: list[dict]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


_HASHED: dict[tuple, str] = {}
"""This process's file hashes by (path, size, modification time): a run keys its data
cache by the hash and then records it, and reads the file once for both."""


def file_hash(path: Path) -> str:
    """The SHA-256 of a file's bytes (sampled beyond `FULL_HASH_BYTES`), or an image
    folder's listing hash; a file's is remembered while its size and time stay."""
    if path.is_dir():
        return _folder_hash(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHED:
        if len(_HASHED) > 64:
            _HASHED.clear()
        _HASHED[key] = _file_hash(path)
    return _HASHED[key]


def _file_hash(path: Path) -> str:
    if path.is_dir():
        return _folder_hash(path)
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as fh:
        if size <= FULL_HASH_BYTES:
            while block := fh.read(BLOCK):
                digest.update(block)
        else:
            digest.update(f"size {size}".encode())
            step = (size - BLOCK) // (SAMPLES - 1)
            for i in range(SAMPLES):
                fh.seek(i * step)
                digest.update(fh.read(BLOCK))
    return digest.hexdigest()


def _folder_hash(root: Path) -> str:
    digest = hashlib.sha256(b"folder")
    entries = []
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            full = Path(folder) / name
            st = full.stat()
            entries.append((full.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns))
    for entry in sorted(entries):
        digest.update(json.dumps(entry).encode())
    return "listing:" + digest.hexdigest()
