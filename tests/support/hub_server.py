"""A loopback HTTP server that answers the way the Hugging Face hub does.

It serves model repos from local folders so hub code can be tested for real
(through huggingface_hub) with no network. Only the endpoints hubtune and
huggingface_hub use are implemented:

    GET  /api/models?search=&limit=&pipeline_tag=&library=&sort=
    GET  /api/models/{repo}[/revision/{rev}]
    GET  /api/models/{repo}/tree/{rev}[/{path}]?recursive=true
    HEAD /{repo}/resolve/{rev}/{file}   and GET with Range support

the upload protocol a push speaks (tests/support/hub_upload.py), and dataset repos (`Repo(..., repo_type="dataset")`) as huggingface_hub 2.x and
`datasets` ask for them:

    GET  /api/datasets?search=&limit=&sort=&filter=   (filter repeated: every tag must match)
    GET  /api/datasets/{repo}[/revision/{rev}]        (cardData from the README's YAML;
                                                      sibling sizes with ?blobs=true)
    GET  /api/datasets/{repo}/tree/{rev}[/{path}]?recursive=true|false
    POST /api/datasets/{repo}/paths-info/{rev}        (form field `paths`, repeated)
    HEAD /datasets/{repo}/resolve/{rev}/{file}   and GET with Range support

A dataset's tags are its own plus those the hub derives from its README's YAML
(license:, task_categories:, size_categories:), as the hub does. A gated repo answers 401 without an Authorization header; with `token` set it
answers 403 to any other token (access not granted), as the hub does.

Unknown repos, revisions and files answer 404 with `X-Error-Code`, and a HEAD
error has no body, as the real hub. `throttle_bytes_per_s` slows file bodies
so a test can cancel a download midway. Requests are served by a
ThreadingHTTPServer on 127.0.0.1 with a per-connection timeout.

A hostile hub, per repo (off by default): `card_overrides` replaces fields of the
repo's JSON (a `lastModified` that is not a date, counts as text, a commit that is a
path); `listed_files` adds names to its siblings and tree (`../x.parquet`) served
from other files; `tampered` files come down with other bytes of the same length
than the hashes listed; `any_revision` answers every revision (`../../x`) with the
repo's commit; `redirect_loop` answers every request with a redirect to itself;
`file_headers` replaces a file answer's headers (an ETag or commit that is a path).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse


@dataclass
class Repo:
    repo_id: str
    folder: Path
    pipeline_tag: str | None = None
    library: str = "transformers"
    downloads: int = 0
    likes: int = 0
    last_modified: str = "2026-01-01T00:00:00.000Z"
    gated: bool = False
    tags: list[str] = field(default_factory=list)
    error_status: int | None = None
    """Answer every request for this repo with this HTTP status (e.g. 500)."""
    repo_type: str = "model"
    """model or dataset: which API paths serve it."""
    token: str | None = None
    """For a gated repo: the one token granted access (others get 403)."""
    card_overrides: dict = field(default_factory=dict)
    """Hostile: fields that replace the repo's JSON ones (search results and info)."""
    listed_files: dict[str, str] = field(default_factory=dict)
    """Hostile: name listed in siblings and tree -> the real file whose bytes it serves."""
    tampered: tuple[str, ...] = ()
    """Hostile: files whose body differs from the listed hashes (same length)."""
    any_revision: bool = False
    """Hostile: every revision name is answered, with the repo's commit."""
    redirect_loop: bool = False
    """Hostile: every request for this repo is redirected to itself, for ever."""
    file_headers: dict[str, str] = field(default_factory=dict)
    """Hostile: headers that replace those of a file's answer (an ETag that is a path)."""

    @property
    def sha(self) -> str:
        h = hashlib.sha1(self.repo_id.encode())
        for f in self.files():
            h.update(f.encode())
            h.update(self.etag(f).encode())
        return h.hexdigest()

    def files(self) -> list[str]:
        return sorted(
            p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*") if p.is_file()
        )

    def listed(self) -> list[str]:
        """The files the hub lists: the real ones plus any hostile `listed_files`."""
        return sorted({*self.files(), *self.listed_files})

    def path(self, name: str) -> Path:
        return self.folder / self.listed_files.get(name, name)

    def size(self, name: str) -> int:
        return self.path(name).stat().st_size

    def etag(self, name: str) -> str:
        return hashlib.sha256(self.path(name).read_bytes()).hexdigest()

    def blob_id(self, name: str) -> str:
        """The git blob id (sha1 of a header and the bytes), as the hub lists it."""
        data = self.path(name).read_bytes()
        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def body(self, name: str) -> bytes:
        data = self.path(name).read_bytes()
        if name in self.tampered:  # the same length, other bytes
            data = bytes(b ^ 0x5A for b in data)
        return data

    def parameters(self) -> dict[str, int]:
        """Parameter counts per dtype, read from the safetensors headers."""
        import struct

        counts: dict[str, int] = {}
        for name in self.files():
            if not name.endswith(".safetensors"):
                continue
            with open(self.folder / name, "rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                if size > 10 << 20:
                    continue  # not a safetensors file; the real hub reports nothing either
                header = json.loads(fh.read(size))
            for key, meta in header.items():
                if key == "__metadata__":
                    continue
                n = 1
                for dim in meta["shape"]:
                    n *= dim
                counts[meta["dtype"]] = counts.get(meta["dtype"], 0) + n
        return counts

    def card_data(self) -> dict:
        """The README's YAML front matter ({} without one), as the hub serves it (a hostile
        card's stands in `card_overrides["cardData"]`: the server never parses it)."""
        import yaml

        if "cardData" in self.card_overrides:
            return self.card_overrides["cardData"]

        readme = self.folder / "README.md"
        text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
        if not text.startswith("---"):
            return {}
        end = text.find("\n---", 3)
        meta = yaml.safe_load(text[3:end]) if end > 0 else None
        return meta if isinstance(meta, dict) else {}

    def dataset_tags(self) -> list[str]:
        tags = list(self.tags)
        for key in ("license", "task_categories", "size_categories"):
            values = self.card_data().get(key) or []
            for value in values if isinstance(values, list) else [values]:
                tag = f"{key}:{value}"
                if tag not in tags:
                    tags.append(tag)
        return tags

    def card(self) -> dict:
        return {**self._card(), **self.card_overrides}

    def _card(self) -> dict:
        if self.repo_type == "dataset":
            return {"id": self.repo_id, "author": self.repo_id.split("/")[0], "sha": self.sha,
                    "downloads": self.downloads, "likes": self.likes,
                    "tags": self.dataset_tags(), "lastModified": self.last_modified,
                    "createdAt": self.last_modified, "private": False,
                    "gated": "auto" if self.gated else False, "disabled": False}
        return {
            "id": self.repo_id,
            "modelId": self.repo_id,
            "sha": self.sha,
            "downloads": self.downloads,
            "likes": self.likes,
            "pipeline_tag": self.pipeline_tag,
            "library_name": self.library,
            "tags": [self.library, *self.tags] + ([self.pipeline_tag] if self.pipeline_tag else []),
            "lastModified": self.last_modified,
            "createdAt": self.last_modified,
            "private": False,
            "gated": "auto" if self.gated else False,
            "disabled": False,
        }


class HubServer:
    """Start with `with HubServer(repos) as hub: hub.url ...`."""

    def __init__(self, repos: list[Repo], *, throttle_bytes_per_s: int | None = None) -> None:
        self.repos = {r.repo_id: r for r in repos if r.repo_type == "model"}
        self.datasets = {r.repo_id: r for r in repos if r.repo_type == "dataset"}
        self.throttle_bytes_per_s = throttle_bytes_per_s
        self.requests: list[tuple[str, str]] = []
        from tests.support.hub_upload import Uploads

        self.uploads = Uploads(self)
        """The write side (tests/support/hub_upload.py): pushed repos land in `repos`."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(  # shutdown waits for one poll
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.uploads.close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10  # a stuck client never holds a thread for long

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                self._route(head=True)

            def do_GET(self) -> None:
                self._route(head=False)

            def do_PUT(self) -> None:
                from tests.support.hub_upload import read_body

                hub.requests.append((self.command, self.path))
                if not hub.uploads.put(self, _segments(urlparse(self.path).path),
                                       read_body(self)):
                    self._error(404, "EntryNotFound", False)

            def do_POST(self) -> None:
                from tests.support.hub_upload import read_body

                url = urlparse(self.path)
                segs = _segments(url.path)
                hub.requests.append((self.command, self.path))
                body = read_body(self)
                if hub.uploads.post(self, segs, body):
                    return None
                form = parse_qs(body.decode()) if body else {}
                if segs[:2] != ["api", "datasets"] or segs[4:5] != ["paths-info"]:
                    return self._error(404, "EntryNotFound", False)
                repo = self._dataset_repo("/".join(segs[2:4]), "/".join(segs[5:6]), False)
                if repo is None:
                    return None
                wanted = form.get("paths", [])
                entries = [e for e in _tree(repo, "", recursive=True) if e["path"] in wanted]
                return self._json(entries, False)

            # -- routing -------------------------------------------------

            def _route(self, head: bool) -> None:
                url = urlparse(self.path)
                # Split before unquoting: a revision's own '/' comes as %2F, in one segment.
                segs = _segments(url.path)
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                hub.requests.append((self.command, self.path))
                if segs == ["api", "models"]:
                    return self._json(hub._search(query), head)
                if segs[:2] == ["api", "models"]:
                    return self._api_model(segs[2:], head)
                if segs == ["api", "datasets"]:
                    filters = parse_qs(url.query).get("filter", [])
                    return self._json(hub._search(query, hub.datasets, filters), head)
                if segs[:2] == ["api", "datasets"]:
                    return self._api_dataset(segs[2:], query, head)
                if len(segs) >= 6 and segs[0] == "datasets" and segs[3] == "resolve":
                    repo = self._dataset_repo("/".join(segs[1:3]), segs[4], head)
                    if repo is None:
                        return None
                    return self._send_file(repo, "/".join(segs[5:]), head)
                if len(segs) >= 5 and segs[2] == "resolve":
                    repo_id = "/".join(segs[:2])
                    return self._file(repo_id, segs[3], "/".join(segs[4:]), head)
                return self._error(404, "EntryNotFound", head)

            def _api_model(self, parts: list[str], head: bool) -> None:
                repo = hub.repos.get("/".join(parts[:2]))
                if repo is None:
                    return self._error(404, "RepoNotFound", head)
                if repo.error_status:
                    return self._error(repo.error_status, None, head)
                if repo.redirect_loop:
                    return self._redirect_to_self(head)
                tail = parts[2:]
                if tail and tail[0] in ("revision", "tree"):
                    if len(tail) < 2 or not self._revision_ok(repo, tail[1]):
                        return self._error(404, "RevisionNotFound", head)
                if repo.gated and not self.headers.get("Authorization"):
                    return self._error(401, "GatedRepo", head)
                if tail and tail[0] == "tree":
                    prefix = "/".join(tail[2:])
                    entries = [
                        {"type": "file", "path": f, "size": repo.size(f), "oid": repo.blob_id(f),
                         **{k: {"oid": v["sha256"], "size": v["size"], "pointerSize": 134}
                            for k, v in _lfs(repo, f).items()}}
                        for f in repo.listed() if f.startswith(prefix)
                    ]
                    return self._json(entries, head)
                card = repo.card()
                params = repo.parameters()
                if params:
                    card["safetensors"] = {"parameters": params, "total": sum(params.values())}
                card["siblings"] = [
                    {"rfilename": f, "size": repo.size(f), "blobId": repo.etag(f)}
                    for f in repo.listed()
                ]
                card["usedStorage"] = sum(s["size"] for s in card["siblings"])
                card.update(repo.card_overrides)
                return self._json(card, head)

            def _revision_ok(self, repo: Repo, rev: str) -> bool:
                return repo.any_revision or rev in ("main", repo.sha)

            def _redirect_to_self(self, head: bool) -> None:
                self.send_response(302)
                self.send_header("Location", self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _dataset_repo(self, repo_id: str, rev: str | None, head: bool) -> Repo | None:
                """The dataset repo when this request may read it at `rev` (None: answered
                with an error already)."""
                repo = hub.datasets.get(repo_id)
                if repo is None:
                    self._error(404, "RepoNotFound", head)
                    return None
                if repo.error_status:
                    self._error(repo.error_status, None, head)
                    return None
                if repo.redirect_loop:
                    self._redirect_to_self(head)
                    return None
                if rev is not None and not self._revision_ok(repo, rev):
                    self._error(404, "RevisionNotFound", head)
                    return None
                if repo.gated:
                    auth = self.headers.get("Authorization")
                    if not auth:
                        self._error(401, "GatedRepo", head)
                        return None
                    if repo.token is not None and auth != f"Bearer {repo.token}":
                        self._error(403, "GatedRepo", head)
                        return None
                return repo

            def _api_dataset(self, parts: list[str], query: dict[str, str], head: bool) -> None:
                tail = parts[2:]
                rev = None
                if tail and tail[0] in ("revision", "tree"):
                    rev = tail[1] if len(tail) >= 2 else ""
                repo = self._dataset_repo("/".join(parts[:2]), rev, head)
                if repo is None:
                    return None
                if tail and tail[0] == "tree":
                    recursive = query.get("recursive", "false").lower() == "true"
                    return self._json(_tree(repo, "/".join(tail[2:]), recursive=recursive), head)
                card = repo.card()
                card["cardData"] = repo.card_data()
                blobs = query.get("blobs", "false").lower() == "true"
                card["siblings"] = [
                    {"rfilename": f, **({"size": repo.size(f), "blobId": repo.blob_id(f),
                                         **_lfs(repo, f)} if blobs else {})}
                    for f in repo.listed()]
                card["usedStorage"] = sum(repo.size(f) for f in repo.listed())
                card.update(repo.card_overrides)
                return self._json(card, head)

            def _file(self, repo_id: str, rev: str, name: str, head: bool) -> None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._error(404, "RepoNotFound", head)
                if repo.error_status:
                    return self._error(repo.error_status, None, head)
                if repo.redirect_loop:
                    return self._redirect_to_self(head)
                if not self._revision_ok(repo, rev):
                    return self._error(404, "RevisionNotFound", head)
                if repo.gated and not self.headers.get("Authorization"):
                    return self._error(401, "GatedRepo", head)
                return self._send_file(repo, name, head)

            def _send_file(self, repo: Repo, name: str, head: bool) -> None:
                if name not in repo.listed() or not repo.path(name).is_file():
                    return self._error(404, "EntryNotFound", head)
                data = repo.body(name)
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0] or 0)
                body = data[start:]
                self.send_response(206 if start else 200)
                headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{repo.etag(name)}"',
                           "Content-Length": str(len(body)),
                           "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes",
                           **repo.file_headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if head:
                    return
                self._send_body(body)

            def _send_body(self, body: bytes) -> None:
                rate = hub.throttle_bytes_per_s
                if not rate:
                    self.wfile.write(body)
                    return
                chunk = max(1, rate // 20)
                for i in range(0, len(body), chunk):
                    try:
                        self.wfile.write(body[i : i + chunk])
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    time.sleep(chunk / rate)

            def _json(self, payload, head: bool) -> None:
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _error(self, status: int, code: str | None, head: bool) -> None:
                body = b"" if head else json.dumps({"error": code or "Server error"}).encode()
                self.send_response(status)
                if code:  # the hub names 4xx causes; a 5xx carries no code
                    self.send_header("X-Error-Code", code)
                    self.send_header("X-Error-Message", code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body:
                    self.wfile.write(body)

        return Handler

    def _search(self, q: dict[str, str], repos: dict[str, Repo] | None = None,
                filters: list[str] | None = None) -> list[dict]:
        found = list((self.repos if repos is None else repos).values())
        if q.get("search"):
            found = [r for r in found if q["search"].lower() in r.repo_id.lower()]
        if q.get("pipeline_tag"):
            found = [r for r in found if r.pipeline_tag == q["pipeline_tag"]]
        if q.get("library"):
            found = [r for r in found if r.library == q["library"]]
        for tag in filters if filters is not None else [q["filter"]] if q.get("filter") else []:
            found = [r for r in found if tag in r.card()["tags"]]
        sort = q.get("sort")
        if sort in ("downloads", "likes"):
            found.sort(key=lambda r: getattr(r, sort), reverse=True)
        elif sort in ("lastModified", "last_modified"):
            found.sort(key=lambda r: r.last_modified, reverse=True)
        limit = int(q.get("limit") or 100)
        return [r.card() for r in found[:limit]]


def _segments(path: str) -> list[str]:
    """A URL path's segments, each unquoted on its own (a '%2F' stays inside its segment)."""
    return [unquote(p) for p in path.strip("/").split("/")]


def _lfs(repo: Repo, name: str) -> dict:
    """The `lfs` block the hub lists for a file stored in LFS (here: Parquet and weights)."""
    if not name.endswith((".parquet", ".safetensors", ".bin")):
        return {}
    return {"lfs": {"sha256": repo.etag(name), "size": repo.size(name), "pointerSize": 134}}


def _tree(repo: Repo, prefix: str, *, recursive: bool) -> list[dict]:
    """Tree entries under `prefix` as the hub lists them: files and folders, the
    immediate children only unless `recursive`."""
    prefix = prefix.strip("/")
    base = f"{prefix}/" if prefix else ""
    entries: dict[str, dict] = {}
    for f in repo.listed():
        if not f.startswith(base):
            continue
        rest = f[len(base):].split("/")
        for depth in range(1, len(rest)):
            folder = base + "/".join(rest[:depth])
            if depth == 1 or recursive:
                entries.setdefault(folder, {"type": "directory", "path": folder,
                                            "oid": hashlib.sha1(folder.encode()).hexdigest()})
        if len(rest) == 1 or recursive:
            size = repo.size(f)
            entry = {"type": "file", "path": f, "size": size, "oid": repo.blob_id(f)}
            if _lfs(repo, f):
                entry["lfs"] = {"oid": repo.etag(f), "size": size, "pointerSize": 134}
            entries[f] = entry
    return sorted(entries.values(), key=lambda e: e["path"])
