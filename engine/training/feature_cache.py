"""Frozen-backbone features kept on disk between runs and audits, one vector per example.

A frozen backbone's pooled output for an example is a function of the model's weights,
its pooling, the example's token ids and the device type and precision it ran at, so
`data audit` and a head-only run on the same data and model need compute it once. The
cache is content-addressed: a folder per model key (`model_key`: the weight files'
stamps, the pooling, device type, precision and `FORMAT`) holding chunks of (example
digest, vector) pairs, each example's digest taken over its token ids (and token types).
Whoever asks for a split's features gets the ones the cache holds and computes only the
examples it lacks, whatever split or order the other reader used: an audit reads a whole
file, a run its seeded training and validation parts (engine/training/features.py's
`cached_features` reads and computes through it).

Entries live under `<data dir>/cache/features/`, written atomically (a crash leaves a
chunk or none), the oldest pruned past `MAX_BYTES`; `hubtune data clear-cache` deletes
them. Imports torch and numpy;
never textual, never the store beyond its data directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = 1
"""Bumped when what a vector means (the pooling code) or the chunk layout changes."""
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".pt", ".pth")
MAX_BYTES = 4 << 30
"""The oldest chunks (of any model) go once the cache holds more than this."""


def cache_root() -> Path:
    from engine.training.data_cache import cache_dir

    return cache_dir().parent / "features"


def model_key(model_path: Path, pooling: str, device_type: str, precision: str) -> str:
    """The cache folder's name for a backbone (a model folder, or one weights file) read
    with `pooling` on `device_type` at `precision` (accelerate's word: no, bf16, fp16); any
    change to the weights (their files' sizes and modification times) names another
    folder."""
    model_path = Path(model_path)
    if model_path.is_dir():
        files = sorted(p for p in model_path.rglob("*")
                       if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    else:
        files = [model_path] if model_path.is_file() else []
    stamps = [[p.name if p == model_path else str(p.relative_to(model_path)),
               p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    text = json.dumps([FORMAT, str(model_path.resolve()), stamps, pooling, device_type,
                       precision])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def example_digests(examples) -> list[bytes]:
    """A 16-byte digest of each example's token ids (and token types, for pairs)."""
    types = getattr(examples, "token_type_ids", None)
    out = []
    for i in range(len(examples)):
        h = hashlib.blake2b(np.asarray(examples.input_ids[i], dtype=np.int64).tobytes(),
                            digest_size=16)
        if types is not None:
            h.update(b"|" + np.asarray(types[i], dtype=np.int64).tobytes())
        out.append(h.digest())
    return out


class FeatureCache:
    """The chunks of one model key: look vectors up by digest, add new ones."""

    def __init__(self, key: str, root: Path | None = None) -> None:
        self.root = root or cache_root()
        self.folder = self.root / key

    def lookup(self, digests: list[bytes]) -> tuple[np.ndarray | None, list[int]]:
        """(a matrix with a row per digest, filled where the cache holds it, or None when it
        holds none of them; the positions it lacks)."""
        wanted: dict[bytes, list[int]] = {}
        for i, d in enumerate(digests):  # equal examples (duplicates) share a digest
            wanted.setdefault(d, []).append(i)
        found: np.ndarray | None = None
        have = np.zeros(len(digests), dtype=bool)
        for keys, vectors in self._chunks("keys", "features"):
            for k, key in enumerate(bytes(row) for row in keys):
                where = wanted.pop(key, None)
                if where is None:
                    continue
                if found is None:
                    found = np.zeros((len(digests), vectors.shape[1]), dtype=np.float32)
                if vectors.shape[1] != found.shape[1]:
                    continue
                found[where] = vectors[k]
                have[where] = True
        return found, [i for i in range(len(digests)) if not have[i]]

    def known(self) -> set[bytes]:
        """The digests the cache holds (only each chunk's keys are read)."""
        return {bytes(row) for (keys,) in self._chunks("keys") for row in keys}

    def _chunks(self, *arrays: str):
        """Each readable chunk's `arrays`; a damaged chunk is deleted (whoever needs its
        vectors computes them again)."""
        for chunk in sorted(self.folder.glob("*.npz")) if self.folder.is_dir() else []:
            try:
                with np.load(chunk) as z:
                    read = tuple(z[name] for name in arrays)
            except FileNotFoundError:  # pruned by another process meanwhile
                continue
            except (OSError, ValueError, KeyError):
                chunk.unlink(missing_ok=True)
                continue
            yield read

    def add(self, digests: list[bytes], vectors: np.ndarray) -> None:
        """Keep `vectors` (a row per digest) as a new chunk, atomically."""
        if not digests:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(b"".join(digests)).hexdigest()[:24]
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                # Raw bytes, not numpy's "S16": that strips a digest's trailing NULs.
                np.savez(fh, keys=np.frombuffer(b"".join(digests), dtype=np.uint8
                                                ).reshape(len(digests), -1),
                         features=np.asarray(vectors, dtype=np.float32))
            os.replace(tmp, self.folder / f"{name}.npz")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._prune()

    def _prune(self) -> None:
        """Delete the least recently written chunks while the cache is over MAX_BYTES."""
        chunks = []
        for p in self.root.glob("*/*.npz"):
            try:
                st = p.stat()
            except FileNotFoundError:  # another process pruned it
                continue
            chunks.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in chunks)
        for _, size, path in sorted(chunks):
            if total <= MAX_BYTES:
                break
            path.unlink(missing_ok=True)
            total -= size


@dataclass(frozen=True)
class Reuse:
    """How a split's features were had: read from the cache, or computed."""

    reused: int
    computed: int


def read_through(key: str, digests: list[bytes], compute, *, progress=None,
                 write: bool = True) -> tuple[np.ndarray, Reuse]:
    """Every example's vector (float32, example order) from the cache of model `key`,
    `compute(missing)` giving the vectors of the examples it lacks (a list of positions;
    added to the cache with `write`), and a `Reuse` saying how much was read."""
    cache = FeatureCache(key)
    found, missing = cache.lookup(digests)
    if missing:
        fresh = compute(missing)
        if write:
            cache.add([digests[i] for i in missing], fresh)
        if found is None:
            found = np.zeros((len(digests), fresh.shape[1]), dtype=np.float32)
        found[missing] = fresh
    elif progress is not None:
        progress(len(digests), len(digests))
    if found is None:  # no examples at all
        found = np.zeros((0, 1), dtype=np.float32)
    return found, Reuse(len(digests) - len(missing), len(missing))
