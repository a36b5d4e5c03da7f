"""The hub's JSON answers (search results, a repo's info), read field by field.

huggingface_hub builds its `ModelInfo`/`DatasetInfo` in one go and raises on the
first field of an unexpected type (a `lastModified` that is not a date): one odd
dataset then breaks a whole search. Here the same answers are fetched through
huggingface_hub's own HTTP session, headers and error mapping, and every field is
read on its own: a field of the wrong type reads as "not stated", an entry that is
not an object is left out, and the rest of the answer still shows. Names that
become paths are checked later, by engine/hub/names.py. No torch, no textual.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

MAX_PAGES = 50
"""Pages of search results followed at most (a hub whose `next` links never end)."""


@dataclass(frozen=True)
class ListedFile:
    """One file as a repo's info lists it."""

    path: object
    """The name as the hub sent it (checked before it becomes a path)."""
    size: int | None
    lfs_sha256: str | None = None
    blob_id: str | None = None


@dataclass(frozen=True)
class RepoAnswer:
    """One search result or a repo's info, every field of the expected type or empty."""

    id: str
    sha: object = None
    """As the hub sent it: checked as a commit before it is used."""
    downloads: int = 0
    likes: int = 0
    updated: str | None = None
    """ISO date and time, or None where the hub gave none (or not a date)."""
    tags: tuple[str, ...] = ()
    gated: bool = False
    private: bool = False
    task: str | None = None
    library: str | None = None
    card_data: dict = field(default_factory=dict)
    files: tuple[ListedFile, ...] | None = None
    """None where the answer listed no files at all."""
    used_storage: int | None = None
    parameters: int | None = None


def as_int(value: object) -> int | None:
    """A count: an int (not a bool), a float with no fraction or digits as text; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def as_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def as_date(value: object) -> str | None:
    """An ISO 8601 date the way the hub sends it, normalised; anything else is None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
    except ValueError:
        return None


def as_tags(value: object) -> tuple[str, ...]:
    return tuple(t for t in value if isinstance(t, str)) if isinstance(value, list) else ()


def read_answer(item: object) -> RepoAnswer | None:
    """One repo's JSON as a RepoAnswer; None when it names no repo at all."""
    if not isinstance(item, dict):
        return None
    repo = item.get("id", item.get("modelId"))
    if isinstance(repo, (int, float)) and not isinstance(repo, bool):
        repo = str(repo)
    if not isinstance(repo, str) or not repo:
        return None
    gated = item.get("gated")
    card = item.get("cardData")
    safetensors = item.get("safetensors")
    return RepoAnswer(
        id=repo, sha=item.get("sha"), downloads=as_int(item.get("downloads")) or 0,
        likes=as_int(item.get("likes")) or 0, updated=as_date(item.get("lastModified")),
        tags=as_tags(item.get("tags")),
        gated=bool(gated) and gated not in ("false", "False", "0"),
        private=item.get("private") is True, task=as_text(item.get("pipeline_tag")),
        library=as_text(item.get("library_name")),
        card_data=card if isinstance(card, dict) else {},
        files=_files(item.get("siblings")), used_storage=as_int(item.get("usedStorage")),
        parameters=as_int(safetensors.get("total")) if isinstance(safetensors, dict) else None)


def _files(siblings: object) -> tuple[ListedFile, ...] | None:
    if not isinstance(siblings, list):
        return None
    out = []
    for s in siblings:
        if not isinstance(s, dict) or "rfilename" not in s:
            continue
        lfs = s.get("lfs") if isinstance(s.get("lfs"), dict) else {}
        out.append(ListedFile(s["rfilename"], as_int(s.get("size")),
                              as_text(lfs.get("sha256")), as_text(s.get("blobId"))))
    return tuple(out)


# -- asking the hub ------------------------------------------------------------------


def _get(url: str, params: dict | None = None):
    """One GET through huggingface_hub's session: its headers (token, user agent) and its
    mapping of HTTP errors to RepositoryNotFoundError, GatedRepoError and the like."""
    from huggingface_hub import get_session
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

    response = get_session().get(url, params=params, headers=build_hf_headers())
    hf_raise_for_status(response)
    return response


def _json(response) -> object:
    try:
        return response.json()
    except (ValueError, RecursionError):  # not JSON, or JSON nested past Python's stack
        return None


def search(kind: str, params: dict, limit: int, endpoint: str | None) -> list[RepoAnswer]:
    """Up to `limit` search results of `kind` (models or datasets), following the hub's
    `next` pages; entries that are not repos are left out, the rest kept."""
    from huggingface_hub import constants

    url = f"{(endpoint or constants.ENDPOINT).rstrip('/')}/api/{kind}"
    found: list[RepoAnswer] = []
    query: dict | None = {**params, "limit": limit}
    for _ in range(MAX_PAGES):
        response = _get(url, query)
        page = _json(response)
        for item in page if isinstance(page, list) else []:
            answer = read_answer(item)
            if answer is not None:
                found.append(answer)
        following = response.links.get("next", {}).get("url")
        if len(found) >= limit or not following:
            break
        url, query = following, None
    return found[:limit]


def repo_info(kind: str, repo: str, revision: str | None, endpoint: str | None, *,
              files_metadata: bool = False) -> RepoAnswer:
    """A repo's info (`kind`: models or datasets), with file sizes and hashes when
    `files_metadata`; a HubError-worthy answer raises huggingface_hub's own errors."""
    from huggingface_hub import constants

    from engine.hub.errors import HubError

    base = f"{(endpoint or constants.ENDPOINT).rstrip('/')}/api/{kind}/{repo}"
    url = base if revision is None else f"{base}/revision/{quote(revision, safe='')}"
    response = _get(url, {"blobs": "true"} if files_metadata else None)
    answer = read_answer(_json(response))
    if answer is None:
        raise HubError(f"The hub's answer about {repo} is not a repo's details; try again "
                       "later, or check HF_ENDPOINT.")
    return answer
