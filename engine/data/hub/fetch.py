"""Hub datasets: an `hf:` reference resolved to a commit, its subset's files picked and
downloaded into the normal Hugging Face cache.

A dataset repo says how its files form subsets (configs) and splits in its
README's YAML (`configs:` with `data_files` per split), or by the hub's
conventional layouts (`data/train-00000-of-00002.parquet`,
`{subset}/validation-*.parquet`, `{subset}/{split}/0000.parquet`, `test.csv`).
`fetch_dataset` reads that from the README and the repo's file list, and
downloads only the files of the chosen subset and splits, through
`snapshot_download(repo_type="dataset", allow_patterns=...)` at the resolved
commit, so a second run (or `HF_HUB_OFFLINE=1`) reads them from the cache.

The token is huggingface_hub's own (HF_TOKEN, or the `hf auth login` store);
hubtune never reads, passes or stores it. Hub failures are one sentence; a
gated or private dataset names the page where access is requested. Reading
the files is engine/data/hub/splits.py's work; this module never imports torch or
`datasets`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.errors import DataError
from engine.data.hub.layout import (  # noqa: F401  read_layout: re-exported
    DATA_SUFFIXES,
    DEFAULT_SUBSET,
    DatasetLayout,
    match_files,
    read_layout,
)
from engine.hub.client import (
    DownloadCancelled,
    GatedRepo,
    HubUnavailable,
    RepoNotFound,
    RevisionNotFound,
    _ByteTracker,
    _http_error,
    _odd_answer,
    _preflight,
    _redirect_errors,
    _refused_names,
    _transport_errors,
    cache_dir,
    guard_file_headers,
)
from engine.hub.names import (
    check_commit,
    check_plain_name,
    check_repo_files,
    check_repo_id,
    check_revision,
    exact_patterns,
    listed_hash,
    repo_path_problem,
    storage_folder,
    verify_downloads,
    verify_snapshot,
)


@dataclass(frozen=True)
class DatasetFiles:
    """One subset of a dataset at one commit, with its splits' files on local disk."""

    repo: str
    sha: str
    subset: str
    subsets: tuple[str, ...]
    splits: dict[str, tuple[Path, ...]]
    """split -> local files, in repo order (only the splits asked for)."""
    all_splits: tuple[str, ...]
    """Every split of the subset, downloaded or not."""
    info: dict = field(default_factory=dict)
    """The subset's README `dataset_info` ({} when the README has none)."""
    more_files: dict[str, int] = field(default_factory=dict)
    """split -> files not downloaded (a preview reads the first shard only)."""
    remote: bool = False
    """The splits hold repo paths, not downloaded yet (see `dataset_file`)."""
    hashes: dict[str, tuple[str, str]] = field(default_factory=dict)
    """repo path -> (sha256 or git, hex) as the hub listed it: downloads are checked
    against it before use."""

    def where(self, split: str) -> str:
        """How messages name one split: hf:OWNER/NAME (subset S, split T)."""
        subset = f"subset {self.subset}, " if self.subset != DEFAULT_SUBSET else ""
        return f"hf:{self.repo} ({subset}split {split})"

    def split_sizes(self) -> dict[str, int]:
        """Rows per split as the README's dataset_info states them ({} if it does not)."""
        from engine.hub.answers import as_int

        splits = self.info.get("splits")
        sizes = {}
        for s in splits if isinstance(splits, list) else ():
            if isinstance(s, dict) and isinstance(s.get("name"), str) \
                    and as_int(s.get("num_examples")) is not None:
                sizes[s["name"]] = as_int(s["num_examples"])
        return sizes


# -- the hub ------------------------------------------------------------------------


def dataset_page(repo: str, endpoint: str | None = None) -> str:
    """The dataset's page on the hub (where access to a gated one is requested)."""
    from huggingface_hub import constants

    return f"{(endpoint or constants.ENDPOINT).rstrip('/')}/datasets/{repo}"


@contextmanager
def dataset_errors(repo: str, revision: str | None = None,
                   endpoint: str | None = None) -> Iterator[None]:
    """huggingface_hub and network failures as one sentence naming the dataset."""
    from huggingface_hub import errors

    guard_file_headers()
    name = f"Dataset hf:{repo}"
    try:
        yield
    except DownloadCancelled:
        raise
    except errors.RevisionNotFoundError:
        raise RevisionNotFound(f"{name} has no revision {revision!r}; check data.revision "
                               "(a branch, tag or commit).") from None
    except errors.HfHubHTTPError as exc:
        raise _dataset_http_error(exc, repo, endpoint) from None
    except errors.LocalEntryNotFoundError as exc:
        # snapshot_download wraps the real failure while it looks in the cache.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, errors.HfHubHTTPError):
            raise _dataset_http_error(cause, repo, endpoint) from None
        raise _not_cached(name) from None
    except errors.OfflineModeIsEnabled:
        raise _not_cached(name) from None
    except (*_redirect_errors(), *_refused_names()) as exc:
        raise _odd_answer(exc, name) from None
    except (*_transport_errors(), ConnectionError, TimeoutError):
        raise _not_cached(name) from None


def _not_cached(name: str) -> HubUnavailable:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return HubUnavailable(f"{name} is not (wholly) in the local cache and hubtune is offline "
                              "(HF_HUB_OFFLINE=1); unset HF_HUB_OFFLINE once to download it.")
    return HubUnavailable(f"{name} is not in the local cache and the hub cannot be reached; "
                          "connect to the network once to download it.")


def _dataset_http_error(exc, repo: str, endpoint: str | None):
    from huggingface_hub import errors

    name = f"Dataset hf:{repo}"
    status = exc.response.status_code if exc.response is not None else None
    if isinstance(exc, errors.GatedRepoError) or status in (401, 403):
        return GatedRepo(f"{name} is gated or private (HTTP {status}): request access at "
                         f"{dataset_page(repo, endpoint)}, then log in with `hf auth login` "
                         "or set HF_TOKEN.")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return RepoNotFound(f"{name} was not found on the hub; check the id (OWNER/NAME), "
                            "or log in if it is private.")
    return _http_error(exc, name)


_INFO: dict[tuple, tuple[float, object]] = {}
"""(repo, revision, endpoint) -> (when asked, the hub's DatasetInfo), asked once a minute: the data
cache's key and the download then agree on one commit even if the branch moves."""


INFO_TTL_S = 60.0
"""How long an answer is reused (a TUI process lives for days; branches move)."""


def _dataset_info(repo: str, revision: str, endpoint: str | None):
    """The hub's answer about the dataset at `revision` (engine.hub.answers.RepoAnswer, with
    file sizes and hashes), its commit checked to be one."""
    import time

    from huggingface_hub import constants

    from engine.hub.answers import repo_info

    key = (repo, revision, endpoint or constants.ENDPOINT)
    asked, info = _INFO.get(key, (0.0, None))
    if info is None or time.monotonic() - asked > INFO_TTL_S:
        _preflight(endpoint)
        info = repo_info("datasets", repo, revision, endpoint, files_metadata=True)
        check_commit(info.sha, repo)
        _INFO[key] = (time.monotonic(), info)
    return info


def resolve_commit(repo: str, revision: str = "main", endpoint: str | None = None) -> str:
    """The commit `revision` of dataset `repo` is at: asked of the hub, or offline read
    from the cache's refs (a HubError when neither can say)."""
    from huggingface_hub import constants

    check_repo_id(repo, "Dataset")
    check_revision(revision, repo)
    if re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    with dataset_errors(repo, revision, endpoint):
        if constants.HF_HUB_OFFLINE:
            return _local_listing(repo, revision)[0]
        return _dataset_info(repo, revision, endpoint).sha


def _remote_listing(repo: str, revision: str, endpoint: str | None):
    """(commit sha, repo files, README text or None, hashes) from the hub, every file name
    checked before any becomes a path."""
    info = _dataset_info(repo, revision, endpoint)
    listed = info.files or ()
    files = sorted(check_repo_files([f.path for f in listed], f"Dataset hf:{repo}"))
    hashes = {f.path: h for f in listed
              if (h := listed_hash(f.lfs_sha256, f.blob_id)) is not None}
    readme = None
    if "README.md" in files:
        path = download_checked(repo, "README.md", info.sha, hashes, endpoint)
        readme = path.read_text(encoding="utf-8", errors="replace")
    return info.sha, files, readme, hashes


def download_checked(repo: str, name: str, sha: str, hashes: dict[str, tuple[str, str]],
                     endpoint: str | None = None) -> Path:
    """One file of the dataset at commit `sha`, through the cache; when it came down now
    (not found there), checked against the hash the hub listed before it is used."""
    from huggingface_hub import hf_hub_download

    root = storage_folder(repo, "dataset") / "snapshots" / sha
    fresh = not (root / name).exists()  # what was there was checked when it came down
    local = Path(hf_hub_download(repo, name, repo_type="dataset", revision=sha,
                                 endpoint=endpoint))
    if fresh:
        verify_downloads(root, [name], hashes, f"Dataset hf:{repo}")
    return local


def _local_listing(repo: str, revision: str):
    """(commit sha, repo files, README text or None) from the local cache alone.

    The files are those of the tree listing huggingface_hub cached with the
    snapshot (so a split only partly downloaded is refused, not read short),
    else those on disk.
    """
    import json

    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(repo, repo_type="dataset", revision=revision,
                                    local_files_only=True, allow_patterns=["README.md"]))
    check_commit(folder.name, repo)
    tree = folder.parent.parent / "trees" / f"{folder.name}.json"
    try:
        listed = json.loads(tree.read_text(encoding="utf-8"))["files"]
        if not isinstance(listed, (dict, list)):
            raise TypeError("not a listing")
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        listed = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
    # The cached listing came from the hub too: its names are checked like the hub's.
    files = sorted(check_repo_files(list(listed), f"Dataset hf:{repo} (cached for offline "
                                                  "use)"))
    readme = folder / "README.md"
    return folder.name, files, readme.read_text(encoding="utf-8", errors="replace") \
        if readme.is_file() else None


def fetch_dataset(repo: str, *, subset: str | None = None, revision: str = "main",
                  splits: tuple[str, ...] | None = None, optional: tuple[str, ...] = (),
                  first_shard: bool = False, download: bool = True,
                  progress: Callable[[int, int], None] | None = None,
                  stop: threading.Event | None = None,
                  endpoint: str | None = None) -> DatasetFiles:
    """Resolve `repo` at `revision`, pick `subset`'s files of `splits` (None: every split;
    `optional` ones too where the subset has them) and download them (only the first of
    each split with `first_shard`); offline, the cached snapshot is read instead.
    Without `download` the splits hold repo paths, for `dataset_file` to fetch one by one
    (streaming)."""
    from huggingface_hub import constants, snapshot_download

    check_repo_id(repo, "Dataset")
    check_revision(revision, repo)
    for name in (*(splits or ()), *optional):
        check_plain_name(name, "split", f"Dataset hf:{repo}")
    cache_dir(writable=not constants.HF_HUB_OFFLINE)
    hashes: dict[str, tuple[str, str]] = {}
    with dataset_errors(repo, revision, endpoint):
        if constants.HF_HUB_OFFLINE:
            sha, files, readme = _local_listing(repo, revision)
        else:
            sha, files, readme, hashes = _remote_listing(repo, revision, endpoint)
    layout = read_layout(readme, files, f"The card of hf:{repo}")
    chosen = check_plain_name(choose_subset(layout, repo, subset), "subset", f"hf:{repo}")
    declared = layout.subsets[chosen]
    for split in declared:
        check_plain_name(split, "split", f"hf:{repo} (subset {chosen})")
    for split in splits or ():
        if split not in declared:
            raise DataError(missing_split(repo, chosen, split, tuple(declared)))
    chosen_splits = (*splits, *(s for s in optional if s in declared and s not in splits)) \
        if splits is not None else tuple(declared)
    wanted = {s: match_files(declared[s], files) for s in chosen_splits}
    for split, matched in wanted.items():
        if not matched:
            raise DataError(f"hf:{repo} declares split {split!r} but holds no files for it "
                            f"({', '.join(declared[split])}); the dataset is incomplete.")
    picked = {s: m[:1] if first_shard else m for s, m in wanted.items()}
    if not download:
        if not constants.HF_HUB_OFFLINE:
            _remember_revision(repo, revision, sha)
        return DatasetFiles(
            repo=repo, sha=sha, subset=chosen, subsets=tuple(layout.subsets),
            splits={s: tuple(Path(f) for f in m) for s, m in picked.items()},
            all_splits=tuple(declared), info=layout.info.get(chosen, {}), remote=True,
            hashes=hashes)
    # Exact names only: huggingface_hub matches these globs against its own listing of the
    # repo, another answer of the hub's, which is never checked by name here.
    patterns = exact_patterns({f for m in picked.values() for f in m})
    if not constants.HF_HUB_OFFLINE:
        tracker = _ByteTracker(progress, stop)
        with dataset_errors(repo, revision, endpoint), verify_snapshot(
                repo, "dataset", f"Dataset hf:{repo}", hashes) as got:
            got.folder = snapshot_download(
                repo, repo_type="dataset", revision=sha, endpoint=endpoint,
                allow_patterns=patterns, tqdm_class=tracker.tqdm_class())
        _remember_revision(repo, revision, sha)
        folder = got.folder
    else:
        with dataset_errors(repo, revision, endpoint):
            folder = snapshot_download(
                repo, repo_type="dataset", revision=sha, local_files_only=True,
                allow_patterns=patterns)
    root = Path(folder)
    return DatasetFiles(
        repo=repo, sha=sha, subset=chosen, subsets=tuple(layout.subsets),
        splits={s: tuple(root / f for f in m) for s, m in picked.items()},
        all_splits=tuple(declared), info=layout.info.get(chosen, {}),
        more_files={s: len(wanted[s]) - len(m) for s, m in picked.items()},
    )


def _remember_revision(repo: str, revision: str, sha: str) -> None:
    """Record in the cache which commit `revision` (a branch or tag) resolved to, as
    huggingface_hub does itself, so an offline run finds the snapshot by that name.
    (Downloading at the sha, which keeps every file of one run at one commit, skips it.)"""

    if revision == sha:
        return
    check_revision(revision, repo)  # `revision` names a file under refs/: never a path out
    refs = storage_folder(repo, "dataset") / "refs"
    ref = refs / revision
    try:
        ref.parent.mkdir(parents=True, exist_ok=True)
        if not ref.is_file() or ref.read_text() != sha:
            ref.write_text(sha)
    except OSError:
        pass  # only offline use is lost; the download itself succeeded


def dataset_file(files: DatasetFiles, path: Path | str) -> Path:
    """One file of a dataset at its resolved commit, downloaded into the cache (offline:
    read from it); for streaming, which fetches a split's files as it reads them."""
    name = Path(path).as_posix()
    if repo_path_problem(name):
        check_repo_files([name], f"Dataset hf:{files.repo}")
    with dataset_errors(files.repo, files.sha):
        return download_checked(files.repo, name, files.sha, files.hashes)


def choose_subset(layout: DatasetLayout, repo: str, subset: str | None) -> str:
    names = tuple(layout.subsets)
    if not names:
        raise DataError(f"hf:{repo} holds no data files this version of hubtune reads "
                        f"({', '.join(DATA_SUFFIXES)}).")
    if subset is None:
        if layout.default is None:
            raise DataError(f"hf:{repo} has several subsets ({', '.join(names)}); choose one "
                            "with data.subset (or --subset).")
        return layout.default
    if subset not in layout.subsets:
        raise DataError(f"hf:{repo} has no subset {subset!r}; its subsets are "
                        f"{', '.join(names)}. Set data.subset to one of them.")
    return subset


def missing_split(repo: str, subset: str, split: str, present: tuple[str, ...]) -> str:
    where = f"hf:{repo}" + (f" (subset {subset})" if subset != DEFAULT_SUBSET else "")
    return (f"{where} has no split {split!r}; its splits are {', '.join(present)}. Name one "
            f"after the dataset id (hf:{repo}:{present[0]}) or in data.validation.")


def download_dataset(repo: str, *, revision: str | None = None, subset: str | None = None,
                     progress: Callable[[int, int], None] | None = None,
                     stop: threading.Event | None = None,
                     endpoint: str | None = None) -> Path:
    """`hubtune hub download REPO --repo-type dataset`: the whole repo (or one subset's
    files) into the cache; returns the snapshot folder. Cancelling removes partial files."""
    check_repo_id(repo, "Dataset")
    if revision is not None:
        check_revision(revision, repo)
    if subset is not None:
        try:
            files = fetch_dataset(repo, subset=subset, revision=revision or "main",
                                  progress=progress, stop=stop, endpoint=endpoint)
        except DownloadCancelled:
            _remove_partials(repo)
            raise
        first = next((p for paths in files.splits.values() for p in paths), None)
        return _snapshot_root(first, files.sha) if first else cache_dir()
    from huggingface_hub import snapshot_download

    cache_dir(writable=True)
    _preflight(endpoint)
    tracker = _ByteTracker(progress, stop)
    try:
        with dataset_errors(repo, revision, endpoint), verify_snapshot(
                repo, "dataset", f"Dataset hf:{repo}") as got:
            got.folder = snapshot_download(repo, repo_type="dataset", revision=revision,
                                           endpoint=endpoint, tqdm_class=tracker.tqdm_class())
        return Path(got.folder)
    except DownloadCancelled:
        _remove_partials(repo)
        raise


def _snapshot_root(path: Path, sha: str) -> Path:
    return next(p for p in [path, *path.parents] if p.name == sha)


def _remove_partials(repo: str) -> None:
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"datasets--{repo.replace('/', '--')}" / "blobs"
    for partial in folder.glob("*.incomplete"):
        partial.unlink(missing_ok=True)
