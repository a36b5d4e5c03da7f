"""Names that come from the hub (or are sent to it), checked before they become paths.

A repo id, a revision, a commit, a file of a repo's tree (as the hub lists it, or as
the copy cached for offline use lists it), a subset or a split name all end up
joined to a folder of the Hugging Face cache, by huggingface_hub or by hubtune.
Every one of them passes through here first, so that `..`, an absolute path or a
separator where none belongs is one sentence instead of a file written or read
outside the cache. Also the check of a downloaded file against the hash the hub
listed for it. Pure: no network, no torch, no textual.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.hub.errors import HubError

MAX_NAME = 1000
"""The longest repo path, revision, subset or split name taken (the hub's are far shorter)."""
_COMMIT = re.compile(r"[0-9a-f]{40}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REF_BAD = re.compile(r"[\s~^:?*\[\\]|\.\.|@\{|//")
"""What git itself refuses in a branch or tag name (git check-ref-format)."""


class UnsafeName(HubError):
    """A name from the hub or a config that would leave its place in the cache, or a
    download whose bytes are not the ones the hub listed."""


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "...'"


def check_repo_id(repo: object, what: str = "Repo id") -> str:
    """`repo` when huggingface_hub would take it as OWNER/NAME; else one sentence (rather
    than its HFValidationError, or a folder name with `..` in it)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        if not isinstance(repo, str):
            raise HFValidationError("not text")
        validate_repo_id(repo)
    except HFValidationError:
        raise UnsafeName(f"{what} {_shown(repo)} is not a hub repo id; write OWNER/NAME with "
                         "letters, digits, '-', '_' and '.' (no '..' or '--', not starting or "
                         "ending with '-' or '.', at most 96 characters each).") from None
    return repo


def check_revision(revision: object, repo: str = "") -> str:
    """A branch, tag or commit name that stays one ref under the cache's `refs/` folder
    (huggingface_hub and hubtune write `refs/<revision>`): branch names may hold `/`
    (`refs/pr/1`), never `..`, an absolute path, a backslash or a control character."""
    where = f" of hf:{repo}" if repo else ""
    if not isinstance(revision, str) or not revision.strip():
        raise UnsafeName(f"The revision{where} is empty; give a branch, tag or commit (main).")
    bad = _ref_problem(revision)
    if bad:
        raise UnsafeName(f"Revision {_shown(revision)}{where} is not a branch, tag or commit "
                         f"name ({bad}); hubtune refuses it.")
    return revision


def _ref_problem(name: str) -> str | None:
    if len(name) > MAX_NAME:
        return f"longer than {MAX_NAME} characters"
    if _CONTROL.search(name):
        return "it holds a control character"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "it is an absolute path"
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return "it holds an empty, '.' or '..' part"
    if _REF_BAD.search(name) or name.endswith((".", ".lock")) or any(
            p.startswith(".") for p in parts):
        return "it holds a character or part git does not allow in a ref"
    return None


def check_commit(sha: object, repo: str) -> str:
    """A commit the hub answered: 40 hex digits, as every commit the hub has is."""
    if not isinstance(sha, str) or not _COMMIT.fullmatch(sha):
        raise UnsafeName(f"The hub answered {_shown(sha)} as the commit of hf:{repo}, which is "
                         "not a commit hash; hubtune refuses to use it.")
    return sha


def repo_path_problem(name: object) -> str | None:
    """Why `name` cannot be a file of a repo (None: it can): a relative path of `/`-joined
    parts, none of them empty, `.` or `..`, with no backslash or control character."""
    if not isinstance(name, str) or not name:
        return "it is not a name"
    if len(name) > MAX_NAME:
        return f"it is longer than {MAX_NAME} characters"
    if _CONTROL.search(name):
        return "it holds a control character"
    if "\\" in name:
        return "it holds a backslash"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "it is an absolute path"
    if any(p in ("", ".", "..") for p in name.split("/")):
        return "it leaves its folder (an empty, '.' or '..' part)"
    return None


def check_repo_files(names: Iterable[object], where: str) -> list[str]:
    """A repo's file list (the hub's, or the one cached for offline use), every name
    checked: one that would leave the snapshot folder refuses the whole listing."""
    out = []
    for name in names:
        bad = repo_path_problem(name)
        if bad:
            raise UnsafeName(f"{where} lists a file {_shown(name)} that cannot be a file of a "
                             f"repo ({bad}); hubtune refuses to read it.")
        out.append(name)
    return out


def check_plain_name(name: object, what: str, where: str) -> str:
    """A subset or split name: one name, never a path (no separator, `.` or `..`)."""
    if not isinstance(name, str) or not name.strip() or name in (".", "..") \
            or "/" in name or "\\" in name or _CONTROL.search(name) or len(name) > MAX_NAME:
        raise UnsafeName(f"{where} names a {what} {_shown(name)}, which is not a plain name "
                         "(a separator, '.', '..' or a control character); hubtune refuses "
                         "it.")
    return name


def exact_patterns(names: Iterable[str]) -> list[str]:
    """Glob patterns that match exactly these file names (huggingface_hub's allow_patterns
    are fnmatch globs, where `*` would match other entries of the hub's own listing)."""
    return sorted({re.sub(r"([*?\[])", r"[\1]", n) for n in names})


# -- the hash the hub listed ---------------------------------------------------------


def listed_hash(lfs_sha256: object, blob_id: object) -> tuple[str, str] | None:
    """(kind, hex) to check a download against: the LFS sha256 where the hub listed one,
    else the git blob id (sha1) of a small file; None when the hub listed neither."""
    if isinstance(lfs_sha256, str) and re.fullmatch(r"[0-9a-f]{64}", lfs_sha256):
        return ("sha256", lfs_sha256)
    if isinstance(blob_id, str) and _COMMIT.fullmatch(blob_id):
        return ("git", blob_id)
    return None


def file_matches(path: Path, expected: tuple[str, str]) -> bool:
    """Whether the file's bytes hash to what the hub listed."""
    kind, want = expected
    digest = hashlib.sha256() if kind == "sha256" else hashlib.sha1()
    if kind == "git":
        digest.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest() == want


def verify_downloads(root: Path, names: Iterable[str], hashes: dict[str, tuple[str, str]],
                     where: str) -> None:
    """Check each downloaded file under `root` against the hash the hub listed; one that
    differs is removed from the cache (its blob and its link), so neither this run nor an
    offline one reads it, and is one sentence."""
    for name in names:
        expected = hashes.get(name)
        link = root / name
        if expected is None or not link.exists():
            continue
        if not file_matches(link, expected):
            blob = link.resolve()
            link.unlink(missing_ok=True)
            if blob != link and _in_cache(blob):  # never a file a bad link points out at
                blob.unlink(missing_ok=True)
            raise UnsafeName(f"{where}: the file {_shown(name)} that came down does not match "
                             f"the {'sha256' if expected[0] == 'sha256' else 'git hash'} the "
                             "hub listed for it; it was removed from the cache. Try again, "
                             "and tell the repo's owner if it happens again.")


def _in_cache(path: Path) -> bool:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).resolve() in path.parents


def storage_folder(repo: str, repo_type: str) -> Path:
    """The cache folder huggingface_hub keeps `repo` in (models--OWNER--NAME)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo.replace('/', '--')}"


def tree_hashes(storage: Path, sha: str) -> dict[str, tuple[str, str]]:
    """The hashes of the tree listing huggingface_hub cached with a snapshot
    (`trees/<commit>.json`), read field by field ({} where there is none)."""
    try:
        data = json.loads((storage / "trees" / f"{sha}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    out = {}
    for name, entry in (files.items() if isinstance(files, dict) else ()):
        if isinstance(entry, dict):
            found = listed_hash(entry.get("lfs_sha256"), entry.get("blob_id"))
            if found is not None:
                out[name] = found
    return out


class Download:
    """What a download under `verify_snapshot` fetched: set `folder` to the snapshot."""

    folder: str | Path | None = None


def _present(storage: Path) -> set[Path]:
    snapshots = storage / "snapshots"
    return {p for p in snapshots.rglob("*") if not p.is_dir()} if snapshots.is_dir() else set()


@contextmanager
def verify_snapshot(repo: str, repo_type: str, where: str,
                    hashes: dict[str, tuple[str, str]] | None = None) -> Iterator[Download]:
    """Around a snapshot download: every file it added is checked against the hash the hub
    listed (`hashes`, else the tree listing cached with the snapshot) before anything
    reads it. Files that were there already were checked when they came down."""
    storage = storage_folder(repo, repo_type)
    before = _present(storage)
    got = Download()
    yield got
    if got.folder is None:
        return
    folder = Path(got.folder)
    added = sorted(p.relative_to(folder).as_posix() for p in _present(storage) - before
                   if folder in p.parents)
    if added:
        listed = hashes if hashes is not None else tree_hashes(storage, folder.name)
        verify_downloads(folder, added, listed, where)
