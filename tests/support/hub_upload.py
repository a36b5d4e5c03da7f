"""The loopback hub's write side: the upload protocol huggingface_hub 2.x speaks when it
pushes a folder with `create_repo` + `upload_folder` (over LFS: the tests set
HF_HUB_DISABLE_XET, as the Xet path needs the hub's content-addressed store):

    POST /api/repos/create                              {"name", "organization", ...}
    POST /api/validate-yaml                             a README's metadata (accepted)
    POST /api/models/{repo}/preupload/{rev}             which files go by LFS
    POST /{repo}.git/info/lfs/objects/batch             where to PUT each LFS object
    PUT  /lfs-upload/{oid}                              the bytes (checked against oid)
    POST /lfs-verify                                    {"oid", "size"}
    POST /api/models/{repo}/commit/{rev}                NDJSON: header, files, LFS files

Writing needs `Authorization: Bearer WRITE_TOKEN`: none answers 401, another token 403
(a read-only token), and creating a repo that exists 409, as the hub does. A pushed repo
is then served for download like the others. An LFS object the hub holds already gets
no upload action, so a push run again sends only what is missing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

WRITE_TOKEN = "hf_loopback_write"
READ_TOKEN = "hf_loopback_read"
LFS_MIN_BYTES = 1024
"""Files this large (or weights) go by LFS, as the hub sends binaries."""


class Uploads:
    def __init__(self, hub) -> None:
        self.hub = hub
        self._root: Path | None = None
        self.lfs: dict[str, bytes] = {}
        self.puts: list[str] = []
        """The LFS objects whose bytes were sent, in order."""
        self.commits: list[str] = []
        self.write_token = WRITE_TOKEN
        """The token that may write (a test may make it its own)."""

    @property
    def root(self) -> Path:
        """Where pushed repos' files land: made on the first push, gone with the server."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="loopback-hub-"))
        return self._root

    def close(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    # -- routing ----------------------------------------------------------------

    def post(self, handler, segs: list[str], body: bytes) -> bool:
        """Answer an upload POST; False: not one of ours."""
        if segs == ["api", "repos", "create"]:
            return self._authorised(handler) and self._create(handler, json.loads(body))
        if len(segs) == 6 and segs[:2] == ["api", "models"] and segs[4] == "preupload":
            return self._authorised(handler) and self._preupload(handler, json.loads(body))
        if len(segs) == 6 and segs[:2] == ["api", "models"] and segs[4] == "commit":
            repo_id = "/".join(segs[2:4])
            return self._authorised(handler) and self._commit(handler, repo_id, body)
        if segs[-4:] == ["info", "lfs", "objects", "batch"] and segs[1].endswith(".git"):
            return self._authorised(handler) and self._batch(handler, json.loads(body))
        if segs == ["api", "validate-yaml"]:  # a README's metadata, checked before a commit
            return self._reply(handler, 200, {"errors": [], "warnings": []})
        if segs == ["lfs-verify"]:
            oid = json.loads(body).get("oid")
            return self._reply(handler, 200 if oid in self.lfs else 404, {})
        return False

    def put(self, handler, segs: list[str], body: bytes) -> bool:
        if len(segs) != 2 or segs[0] != "lfs-upload":
            return False
        oid = segs[1]
        if hashlib.sha256(body).hexdigest() != oid:
            return self._reply(handler, 400, {"error": "content does not match its oid"})
        self.lfs[oid] = body
        self.puts.append(oid)
        return self._reply(handler, 200, {})

    # -- the steps --------------------------------------------------------------

    def _authorised(self, handler) -> bool:
        token = (handler.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        if not token:
            self._reply(handler, 401, {"error": "Invalid credentials in Authorization header"},
                        code="Unauthorized")
            return False
        if token != self.write_token:
            self._reply(handler, 403, {"error": "You don't have the rights to write here"},
                        code="Forbidden")
            return False
        return True

    def _create(self, handler, payload: dict) -> bool:
        repo_id = f"{payload.get('organization')}/{payload['name']}"
        if repo_id in self.hub.repos:
            return self._reply(handler, 409, {"error": "You already created this model repo",
                                              "url": f"{self.hub.url}/{repo_id}"})
        from tests.support.hub_server import Repo

        folder = self.root / repo_id
        folder.mkdir(parents=True)
        self.hub.repos[repo_id] = Repo(repo_id, folder)
        return self._reply(handler, 200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id})

    def _preupload(self, handler, payload: dict) -> bool:
        files = [{"path": f["path"], "shouldIgnore": False, "oid": None,
                  "uploadMode": "lfs" if f["size"] >= LFS_MIN_BYTES
                  or f["path"].endswith((".safetensors", ".bin")) else "regular"}
                 for f in payload["files"]]
        return self._reply(handler, 200, {"files": files})

    def _batch(self, handler, payload: dict) -> bool:
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.lfs:  # held already: nothing to send again
                entry["actions"] = {"upload": {"href": f"{self.hub.url}/lfs-upload/{obj['oid']}"},
                                    "verify": {"href": f"{self.hub.url}/lfs-verify"}}
            objects.append(entry)
        return self._reply(handler, 200, {"transfer": "basic", "objects": objects})

    def _commit(self, handler, repo_id: str, body: bytes) -> bool:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            return self._reply(handler, 404, {"error": "Repository not found"},
                               code="RepoNotFound")
        for line in body.splitlines():
            item = json.loads(line)
            value = item["value"]
            if item["key"] not in ("file", "lfsFile"):
                continue
            path = repo.folder / value["path"]
            if ".." in Path(value["path"]).parts:
                return self._reply(handler, 400, {"error": "bad path"})
            path.parent.mkdir(parents=True, exist_ok=True)
            if item["key"] == "file":
                path.write_bytes(base64.b64decode(value["content"]))
            elif value["oid"] in self.lfs:
                path.write_bytes(self.lfs[value["oid"]])
            else:
                return self._reply(handler, 422, {"error": f"LFS object {value['oid']} missing"})
        self.commits.append(repo_id)
        return self._reply(handler, 200, {"commitUrl": f"{self.hub.url}/{repo_id}/commit/"
                                                       f"{repo.sha}",
                                          "commitOid": repo.sha, "pullRequestUrl": None})

    def _reply(self, handler, status: int, payload: dict, code: str | None = None) -> bool:
        body = json.dumps(payload).encode()
        handler.send_response(status)
        if code:
            handler.send_header("X-Error-Code", code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return True


def read_body(handler) -> bytes:
    """The request body, whether sent with a length or chunked (a streamed file)."""
    if "chunked" in (handler.headers.get("Transfer-Encoding") or "").lower():
        parts = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(parts)
            parts.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""
