"""Hub datasets found and read about: search with filters, and one dataset's details.

Beside engine/hub/client.py's model search and details, through huggingface_hub's
`list_datasets` and `dataset_info`. Details come from the repo's file list and its
README (YAML `configs:` and `dataset_info`, read by engine/data/hub/layout.py):
subsets, splits with their rows, files and bytes, features, licence, gating and the
card. Nothing here downloads data files or imports `datasets`, torch or textual;
hub text is returned as it came, for the caller to show safely.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.data.hub.layout import DEFAULT_SUBSET, match_files, read_layout
from engine.hub.client import (
    _SORT_PARAMS,
    SORTS,
    HubError,
    HubUnavailable,
    RepoFile,
    _preflight,
    _strip_front_matter,
    hub_errors,
)

SIZE_CATEGORIES = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M",
                   "100M<n<1B", "1B<n<10B", "10B<n<100B", "100B<n<1T", "n>1T")
"""The hub's row-count buckets (`size_categories:` tags), smallest first."""


@dataclass(frozen=True)
class DatasetSummary:
    """One dataset search result."""

    id: str
    tasks: tuple[str, ...]
    """Its task categories (from the hub's tags)."""
    size: str | None
    """Its size category (rows), e.g. 10K<n<100K."""
    downloads: int
    likes: int
    updated: str | None
    cached: bool
    """Some of its files are in the local cache."""
    gated: bool = False


@dataclass(frozen=True)
class SplitDetails:
    name: str
    rows: int | None
    """As the README's dataset_info states it; None where it does not."""
    files: int
    size: int | None
    """Bytes of its files (None where the hub did not say)."""


@dataclass(frozen=True)
class SubsetDetails:
    name: str
    splits: tuple[SplitDetails, ...]
    features: tuple[tuple[str, str], ...]
    """(column, type) from the README's dataset_info; () where it has none (a preview
    reads them from the data)."""


@dataclass(frozen=True)
class DatasetDetails:
    """What a user wants to know before downloading or training on a dataset."""

    id: str
    sha: str | None
    license: str | None
    gated: bool
    private: bool
    downloads: int
    likes: int
    updated: str | None
    tasks: tuple[str, ...]
    size_category: str | None
    subsets: tuple[SubsetDetails, ...]
    default_subset: str | None
    """The subset a run takes when data.subset is not set (None: it must be set)."""
    files: tuple[RepoFile, ...]
    size: int
    """Bytes of the repo's files."""
    card: str
    cached: bool
    tags: tuple[str, ...] = field(default_factory=tuple)

    def subset(self, name: str | None) -> SubsetDetails | None:
        return next((s for s in self.subsets if s.name == name), None)


# -- search -------------------------------------------------------------------------


def search_datasets(query: str = "", *, task: str | None = None, size: str | None = None,
                    sort: str = "downloads", limit: int = 30,
                    endpoint: str | None = None) -> list[DatasetSummary]:
    """Hub datasets matching `query`, filtered by task category and size category."""
    if sort not in SORTS:
        raise HubError(f"Cannot sort by {sort!r}; use downloads, likes or updated.")
    if size is not None and size not in SIZE_CATEGORIES:
        raise HubError(f"{size!r} is not a hub size category; use one of "
                       f"{', '.join(SIZE_CATEGORIES)}.")
    from engine.hub.answers import search

    cached = {d.id for d in list_cached_datasets() if d.has_weights}
    filters = [f"task_categories:{task}"] * bool(task) + [f"size_categories:{size}"] * bool(size)
    params = {"search": query or None, "filter": filters or None, "sort": _SORT_PARAMS[sort],
              "direction": -1}
    with hub_errors():
        _online(endpoint)
        found = search("datasets", {k: v for k, v in params.items() if v is not None}, limit,
                       endpoint)
    return [DatasetSummary(id=d.id, tasks=_tagged(d.tags, "task_categories"),
                           size=next(iter(_tagged(d.tags, "size_categories")), None),
                           downloads=d.downloads, likes=d.likes, updated=d.updated,
                           cached=d.id in cached, gated=d.gated)
            for d in found]


def local_dataset_summaries(query: str = "") -> list[DatasetSummary]:
    """The datasets in the local cache matching `query`, as search results: what the hub
    screen lists while the hub cannot be reached."""
    return [DatasetSummary(id=d.id, tasks=(), size=None, downloads=0, likes=0, updated=None,
                           cached=True)
            for d in list_cached_datasets() if query.lower() in d.id.lower()]


def _online(endpoint: str | None) -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise HubUnavailable("The hub is not reachable in offline mode (HF_HUB_OFFLINE=1); "
                             "cached datasets are still listed by `hubtune cache ls`.")
    _preflight(endpoint)


def _tagged(tags, prefix: str) -> tuple[str, ...]:
    return tuple(t.split(":", 1)[1] for t in tags or () if t.startswith(prefix + ":"))


# -- details ------------------------------------------------------------------------


def dataset_details(repo: str, *, revision: str | None = None,
                    endpoint: str | None = None) -> DatasetDetails:
    """Card, subsets and splits (rows, files, bytes), features, size, licence and gating of
    dataset `repo` (`hf:` prefix allowed). Reads the file list and the README only."""
    from engine.data.hub.fetch import dataset_errors, download_checked
    from engine.hub.answers import repo_info
    from engine.hub.names import check_commit, check_repo_id, check_revision, listed_hash

    repo = check_repo_id(repo.removeprefix("hf:"), "Dataset")
    if revision is not None:
        check_revision(revision, repo)
    _online(endpoint)
    with dataset_errors(repo, revision, endpoint):
        info = repo_info("datasets", repo, revision, endpoint, files_metadata=True)
        sha = check_commit(info.sha, repo)
        files = tuple(RepoFile(str(f.path), f.size) for f in info.files or ())
        names = sorted(f.path for f in files)
        readme = None
        if "README.md" in names:
            hashes = {f.path: h for f in info.files or ()
                      if (h := listed_hash(f.lfs_sha256, f.blob_id)) is not None}
            readme = download_checked(repo, "README.md", sha, hashes, endpoint
                                       ).read_text(encoding="utf-8", errors="replace")
    sizes = {f.path: f.size for f in files}
    layout = read_layout(readme, names, f"The card of hf:{repo}")
    subsets = tuple(_subset(name, splits, layout.info.get(name, {}), names, sizes)
                    for name, splits in layout.subsets.items())
    tags = info.tags
    card = info.card_data
    license_ = next(iter(_tagged(tags, "license")), None) or next(
        iter(_as_list(_card_value(card, "license"))), None)
    tasks = _tagged(tags, "task_categories") or tuple(
        _as_list(_card_value(card, "task_categories")))
    size_category = next(iter(_tagged(tags, "size_categories")), None) or next(
        iter(_as_list(_card_value(card, "size_categories"))), None)
    total = info.used_storage if info.used_storage else sum(f.size or 0 for f in files)
    return DatasetDetails(
        id=info.id, sha=sha, license=license_, gated=info.gated,
        private=info.private, downloads=info.downloads, likes=info.likes,
        updated=info.updated, tasks=tasks, size_category=size_category,
        subsets=subsets, default_subset=layout.default, files=files, size=total,
        card=_strip_front_matter(readme or ""),
        cached=info.id in {d.id for d in list_cached_datasets() if d.has_weights}, tags=tags)


def _subset(name: str, splits: dict, info: dict, names: list[str],
            sizes: dict[str, int | None]) -> SubsetDetails:
    from engine.hub.answers import as_int

    rows = {}
    listed = info.get("splits")
    for s in listed if isinstance(listed, list) else ():  # other shapes state no sizes
        if isinstance(s, dict) and isinstance(s.get("name"), (str, int)) \
                and as_int(s.get("num_examples")) is not None:
            rows[str(s["name"])] = as_int(s["num_examples"])
    out = []
    for split, patterns in splits.items():
        matched = match_files(patterns, names)
        known = [sizes.get(f) for f in matched]
        out.append(SplitDetails(split, rows.get(split), len(matched),
                                sum(known) if known and None not in known else None))
    return SubsetDetails(name, tuple(out), _features(info.get("features")))


def _features(value) -> tuple[tuple[str, str], ...]:
    """README `dataset_info.features` (a list of {name, dtype} or a mapping) as
    (column, type) text."""
    if isinstance(value, dict):
        value = [{"name": k, **(v if isinstance(v, dict) else {"dtype": v})}
                 for k, v in value.items()]
    if not isinstance(value, list):
        return ()
    out = []
    for f in value:
        if isinstance(f, dict) and isinstance(f.get("name"), (str, int, float)):
            kind = f.get("dtype", next((f[k] for k in ("sequence", "list", "class_label")
                                        if k in f), None))
            if "class_label" in f:
                kind = {"class_label": f["class_label"]}
            out.append((str(f["name"]), _feature_type(kind)))
    return tuple(out)


def _feature_type(dtype, depth: int = 0) -> str:
    """A feature's type as text, whatever shape the card gave it ('?' for none it names)."""
    if depth > 8:
        return "..."
    if isinstance(dtype, str):
        return dtype
    if isinstance(dtype, dict):
        if "class_label" in dtype:
            label = dtype["class_label"]
            names = label.get("names") if isinstance(label, dict) else None
            values = (list(names.values()) if isinstance(names, dict)
                      else list(names) if isinstance(names, list) else [])
            shown = ", ".join(str(v) for v in values[:10] if isinstance(v, (str, int, float)))
            more = f", +{len(values) - 10} more" if len(values) > 10 else ""
            return f"class_label({shown}{more})"
        for kind in ("sequence", "list"):
            if kind in dtype:
                return f"{kind}({_feature_type(dtype[kind], depth + 1)})"
        return "struct"
    if isinstance(dtype, list):
        return f"list({_feature_type(dtype[0], depth + 1) if dtype else '?'})"
    return "?"


def _card_value(card: dict, key: str):
    return card.get(key) if isinstance(card, dict) else None


def _as_list(value) -> list[str]:
    """A card field as text: a list of scalars, or one scalar (other shapes: nothing)."""
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, (str, int, float))]
    return [str(value)] if isinstance(value, (str, int, float)) else []


# -- the local cache ----------------------------------------------------------------


def list_cached_datasets():
    """Datasets in the huggingface_hub cache (engine.hub.client.CachedModel entries with
    repo_type dataset), largest first; `has_weights` says whether data files are there."""
    from engine.hub.client import list_cached

    return list_cached(repo_type="dataset")


def subset_choices(d: DatasetDetails) -> tuple[str, ...]:
    """The subsets a user picks among: () when the only one is the unnamed default."""
    names = tuple(s.name for s in d.subsets)
    return () if names in ((), (DEFAULT_SUBSET,)) else names
