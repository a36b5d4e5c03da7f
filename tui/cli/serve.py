"""`hubtune serve --stdio`: this machine's hubtune for another machine's, over the SSH
connection that started it (engine/remote/session.py is the other end).

It reads one JSON request per line on stdin and answers one line on stdout. A request
names a hubtune command as a list of arguments, run here in this process as typed at a
terminal, from a fixed list (listing, showing, following, stopping and resuming runs,
the queue, starting a run); anything else is refused. Nothing here runs a shell. Files
a request carries (a run's config) are written under this machine's HUBTUNE_HOME by
their content, and `@NAME` in the arguments names them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import sys
from importlib.metadata import version
from pathlib import Path

import click

ALLOWED = {("runs", "ls"), ("runs", "show"), ("runs", "stop"), ("runs", "resume"),
           ("runs", "errors"), ("runs", "compare"), ("runs", "follow"), ("runs", "metrics"),
           ("runs", "events"), ("runs", "export"), ("queue", "ls"), ("queue", "slots"),
           ("train",)}
"""The commands a remote may ask for (the first one or two words); `runs export` only
as `runs export ID --metrics -` (printed, nothing written here)."""
CHUNK_CHARS = 1 << 20
"""The most of a data file one request carries (base64 text)."""


@click.command("serve")
@click.option("--stdio", is_flag=True, required=True,
              help="Speak hubtune's remote protocol on stdin and stdout (ssh starts it).")
def serve(stdio: bool) -> None:
    """Answer another machine's hubtune over the SSH connection that started this one."""
    out = sys.stdout
    root = click.get_current_context().find_root().command  # `hubtune` itself
    from engine.remote.session import PROTOCOL

    _send(out, {"hubtune": version("hubtune"), "protocol": PROTOCOL})
    for line in sys.stdin:
        try:
            request = json.loads(line)
            ident = request["id"]
        except (ValueError, KeyError, TypeError, RecursionError):
            _send(out, {"id": None, "exit": 2, "stdout": "",
                        "error": "A request must be one JSON object with an id."})
            continue
        try:
            if request.get("ping"):
                _send(out, {"id": ident, "pong": True})
            elif "has" in request or "put" in request:
                _send(out, {"id": ident, **receive(request)})
            elif "export" in request:
                _send(out, {"id": ident, **send_export(request, out, ident)})
            else:
                _send(out, {"id": ident, **answer(request, _Stream(out, ident), root)})
        except BrokenPipeError:  # the other end went away: so does this server
            return
        except Exception as exc:  # the connection outlives any one request's failure
            _send(out, {"id": ident, "exit": 1, "stdout": "",
                        "error": f"Internal error on the remote ({type(exc).__name__}: {exc})."})


class _Stream(io.TextIOBase):
    """A command's output sent on as it is printed (`runs follow`, `train`), one chunk
    per line, so the other end shows progress live."""

    def __init__(self, out, ident) -> None:
        self.out, self.ident = out, ident

    def write(self, text) -> int:
        if isinstance(text, bytes):  # click writes bytes where it finds a binary stream
            text = text.decode("utf-8", "replace")
        if text:
            _send(self.out, {"id": self.ident, "chunk": text})
        return len(text)

    def writable(self) -> bool:
        return True


def receive(request: dict) -> dict:
    """A data file sent in pieces, kept under HUBTUNE_HOME by its content: `has` says
    whether it is here already (then it is not sent again), `put` appends a piece."""
    from store.paths import data_dir

    ask = request.get("has") or request.get("put") or {}
    if not isinstance(ask, dict):
        return {"error": "A file is named by its sha256 and a plain file name."}
    sha, name = str(ask.get("sha", "")), str(ask.get("name", ""))
    if not (len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)) or not name \
            or "/" in name or name.startswith(".") or len(name) > 200:
        return {"error": "A file is named by its sha256 and a plain file name."}
    final = data_dir() / "remote-data" / sha / name
    if "has" in request:
        return {"path": str(final) if final.is_file() else None}
    part = final.with_name(name + ".part")
    try:
        data = base64.b64decode(ask.get("data", ""), validate=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(part, "r+b" if ask.get("offset") else "wb") as fh:
            fh.seek(int(ask.get("offset") or 0))
            fh.write(data)
            fh.truncate()
        if ask.get("last"):
            if hashlib.sha256(part.read_bytes()).hexdigest() != sha:
                part.unlink()
                return {"error": f"{name} arrived changed (its sha256 differs); send it again."}
            part.replace(final)
            return {"path": str(final)}
    except (OSError, ValueError) as exc:
        return {"error": f"Cannot keep {name} here: {exc}."}
    return {"path": None}


class _Pieces(io.RawIOBase):
    """A binary stream sent on as {"id", "piece": base64} lines of PIECE_BYTES each."""

    def __init__(self, out, ident) -> None:
        from engine.remote.session import PIECE_BYTES

        self.out, self.ident, self.size, self.buffer = out, ident, PIECE_BYTES, bytearray()
        self.sent = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.buffer += data
        while len(self.buffer) >= self.size:
            self._emit(bytes(self.buffer[:self.size]))
            del self.buffer[:self.size]
        return len(data)

    def finish(self) -> None:
        if self.buffer:
            self._emit(bytes(self.buffer))
            self.buffer.clear()

    def _emit(self, block: bytes) -> None:
        _send(self.out, {"id": self.ident, "piece": base64.b64encode(block).decode()})
        self.sent += len(block)


def send_export(request: dict, out, ident) -> dict:
    """`hubtune export ID DIR --remote` asked from another machine: the run's model is
    exported into a fresh folder of this machine's hubtune home (never a path the asker
    names), sent as a tar stream in pieces, and the folder removed again."""
    import shutil
    import tarfile
    import uuid

    from engine.core.errors import HubtuneError
    from store import RunStore, StoreError
    from store.paths import data_dir
    from tui.cli.models import export_run

    ask = request.get("export")
    run_id = ask.get("run") if isinstance(ask, dict) else None
    if type(run_id) is not int:
        return {"exit": 2, "error": "An export names a run by its id."}
    folder = data_dir() / "remote-exports" / uuid.uuid4().hex
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        store = RunStore()
        try:
            done, loader, config = export_run(store, run_id, folder, force=False,
                                              protected=None)
        finally:
            store.close()
        pieces = _Pieces(out, ident)
        with tarfile.open(fileobj=pieces, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for item in sorted(done.rglob("*")):
                tar.add(item, arcname=item.relative_to(done).as_posix(), recursive=False)
        pieces.finish()
        return {"exit": 0, "error": None, "loader": loader, "config": config,
                "bytes": pieces.sent}
    except (HubtuneError, StoreError, click.ClickException, OSError) as exc:
        return {"exit": 1, "error": getattr(exc, "message", None) or str(exc)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def answer(request: dict, stream, root: click.Command) -> dict:
    """Run the request's command with `root` (the `hubtune` group) here; its exit code,
    what it printed (sent on as it is printed to `stream` when given), and its error."""
    argv = request.get("argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return {"exit": 2, "stdout": "", "error": "A request's argv is a list of strings."}
    if tuple(argv[:1]) not in ALLOWED and tuple(argv[:2]) not in ALLOWED:
        return {"exit": 2, "stdout": "",
                "error": f"A remote may not run `hubtune {' '.join(argv[:2])[:60]}`."}
    if any(a == "--remote" or a.startswith("--remote=") for a in argv) or (
            argv[:2] == ["runs", "compare"] and any(":" in a for a in argv[2:])):
        # this machine's own remotes (and its ssh keys) are not the asker's to use
        return {"exit": 2, "stdout": "", "error": "A remote may not use --remote there."}
    try:
        argv = _with_files(argv, request.get("files") or {})
    except (OSError, ValueError) as exc:
        return {"exit": 1, "stdout": "", "error": f"Cannot keep the files sent: {exc}."}
    refused = _refused_train(argv) if argv[0] == "train" else None
    if argv[:2] == ["runs", "export"] and (len(argv) != 5 or argv[3:] != ["--metrics", "-"]):
        refused = ("A remote may export a run's metrics only as `runs export ID --metrics -` "
                   "(printed, nothing written there).")
    if refused:
        return {"exit": 2, "stdout": "", "error": refused}
    stdout, stderr = (stream if stream is not None else io.StringIO()), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            root.main(args=argv, prog_name="hubtune", standalone_mode=False)
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.Abort:
            code = 1
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    error = stderr.getvalue().strip().removeprefix("Error: ") or None
    printed = stdout.getvalue() if isinstance(stdout, io.StringIO) else ""
    return {"exit": code, "stdout": printed, "error": error if code else None}


TRAIN_OPTIONS = {"--processes", "--queue", "--detach", "--parent"}
"""What a remote `train` may say besides its config: nothing that opens a port (--nnodes,
--rdzv-endpoint) or changes the config after it was checked (--set)."""


def _refused_train(argv: list[str]) -> str | None:
    """Why this machine will not start the `train` a remote asks for, or None. A run
    started from elsewhere may not run code the config points at (trust_remote_code) nor
    write outside this machine's hubtune home (report_dir)."""
    from engine.core.safe_yaml import load_yaml

    words = [a for a in argv[2:] if not a.lstrip("-").isdigit()]
    extra = sorted({a.split("=")[0] for a in words if a.startswith("-")} - TRAIN_OPTIONS)
    if extra:
        return (f"A remote `train` takes its config and {', '.join(sorted(TRAIN_OPTIONS))} "
                f"only; {extra[0]} is refused (start such a run on that machine).")
    try:
        config = load_yaml(Path(argv[1]).read_text(encoding="utf-8")) if len(argv) > 1 else {}
    except Exception:  # a config that does not read is train's own sentence to give
        return None
    model = (config or {}).get("model") if isinstance(config, dict) else None
    train = (config or {}).get("train") if isinstance(config, dict) else None
    if isinstance(model, dict) and model.get("trust_remote_code"):
        return ("A run started over SSH may not trust code from its model "
                "(model.trust_remote_code); start it on that machine.")
    if isinstance(train, dict) and train.get("report_dir"):
        return ("A run started over SSH reports under that machine's hubtune home only; "
                "leave train.report_dir out.")
    return None


def _with_files(argv: list[str], files: dict) -> list[str]:
    """Write each file sent under HUBTUNE_HOME by its content; `@NAME` becomes its path."""
    from store.paths import data_dir

    paths = {}
    for name, text in files.items():
        if not isinstance(name, str) or not isinstance(text, str) or len(text) > 1 << 20:
            raise ValueError("files are names and texts of at most 1 MB")
        digest = hashlib.sha256(text.encode()).hexdigest()[:32]
        folder = data_dir() / "remote-files"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{digest}.yaml"
        if not path.exists():
            path.write_text(text, encoding="utf-8")
        paths[f"@{name}"] = str(path)
    return [paths.get(a, a) for a in argv]


def _send(out, message: dict) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()
