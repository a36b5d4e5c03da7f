"""`hubtune remote ...`: the other machines this one reaches over SSH, and the way every
`--remote NAME` option runs a hubtune command there (engine/remote/session.py)."""

from __future__ import annotations

import json
import shlex
from importlib.metadata import version

import click

from tui.cli.base import Failure, open_store
from tui.cli.output import cut, dump_json, echo
from tui.formatting import metric
from tui.safe_text import printable


@click.group()
def remote() -> None:
    """Other machines, reached with the system ssh client; nothing listens on a port."""


@remote.command("add")
@click.argument("name")
@click.argument("target", metavar="[USER@]HOST")
@click.option("--port", type=click.IntRange(1, 65535), help="ssh's port there.")
@click.option("--hubtune", "command", default="hubtune", show_default=True,
              help="The command that runs hubtune there (a path, or a name on its PATH).")
@click.option("--home", metavar="DIR", help="Its HUBTUNE_HOME (default: that machine's).")
def remote_add(name: str, target: str, port: int | None, command: str,
               home: str | None) -> None:
    """Add a remote; `hubtune remote test NAME` then checks it answers."""
    from store.remotes import Remote, add_remote

    user, _, host = target.rpartition("@")
    if not host or host.startswith("-") or any(c.isspace() for c in target):
        raise Failure(f"{printable(target, limit=80)} is not [USER@]HOST (a host name or "
                      "address, or an alias from ~/.ssh/config).")
    try:
        parts = shlex.split(command)
    except ValueError:
        parts = []
    if not parts:
        raise Failure(f"--hubtune {printable(command, limit=80)} is not a command (a path, "
                      "or a name on that machine's PATH, quoted as for a shell).")
    add_remote(open_store(), Remote(name, host, user or None, port, command, home))
    echo(f"Added remote {name} ({printable(target, limit=80)}); `hubtune remote test "
         f"{name}` checks it answers.")


@remote.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def remote_ls(as_json: bool) -> None:
    """List the remotes."""
    from store.remotes import list_remotes

    remotes = list_remotes(open_store())
    if as_json:
        echo(dump_json([r.to_json() for r in remotes]))
        return
    if not remotes:
        echo("No remotes yet; `hubtune remote add NAME [USER@]HOST` adds one.")
        return
    echo(f"{'NAME':<16} {'HOST':<32} {'PORT':>5}  HUBTUNE")
    for r in remotes:
        target = f"{r.user}@{r.host}" if r.user else r.host
        echo(f"{cut(r.name, 16):<16} {cut(target, 32):<32} {r.port or '-':>5}  "
             f"{cut(r.hubtune, 40)}")


@remote.command("rm")
@click.argument("name")
def remote_rm(name: str) -> None:
    """Forget a remote (its runs stay on that machine)."""
    from store.remotes import remove_remote

    remove_remote(open_store(), name)
    echo(f"Removed remote {name}.")


@remote.command("test")
@click.argument("name")
def remote_test(name: str) -> None:
    """Check a remote answers: its hubtune version and its queue's slots."""
    with session(name) as s:
        slots = parsed(name, call(s, ["queue", "slots", "--json"]))
    slots = [slot for slot in slots if isinstance(slot, dict)]
    free = sum(1 for slot in slots if not slot.get("held_by") and not slot.get("busy"))
    echo(f"Remote {name} answers: hubtune {printable(s.version, limit=40)}, "
         f"{len(slots)} slots ({free} free).")


def session(name: str):
    """An open connection to remote `name` (a context manager)."""
    from engine.remote.session import RemoteSession
    from store.remotes import get_remote

    return RemoteSession(get_remote(open_store(), name), local_version=version("hubtune"))


def call(s, argv: list[str], files: dict[str, str] | None = None) -> str:
    """Run `hubtune ARGV` on the session's remote; what it printed, or its one sentence."""
    answer = s.call(argv, files=files)
    if answer.get("exit"):
        raise Failure(f"On {s.remote.name}: {printable(answer.get('error') or 'failed')}")
    return str(answer.get("stdout") or "")


def parsed(name: str, text: str) -> list:
    """A remote's --json list, or one sentence saying it sent something else."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, list):
        raise Failure(f"Remote {name} answered with something other than a JSON list; is "
                      "the same hubtune version installed there?")
    return value


def remote_names(which: str) -> list[str]:
    """`--remote NAME` or `--remote all`: the remotes it names."""
    from store.remotes import get_remote, list_remotes

    store = open_store()
    if which == "all":
        return [r.name for r in list_remotes(store)]
    return [get_remote(store, which).name]


def echo_runs_everywhere(which: str, local: list[dict], options: list[str],
                         as_json: bool) -> None:
    """`runs ls --remote NAME|all`: the runs of each remote named (and `local`, this
    machine's), each with `remote`; a remote that cannot be reached is one line on stderr
    and the others are listed."""
    from engine.core.errors import HubtuneError

    rows = [{**r, "remote": None} for r in local]
    for name in remote_names(which):
        try:
            with session(name) as s:
                found = parsed(name, call(s, ["runs", "ls", "--json", *options]))
        except (HubtuneError, Failure) as exc:
            if which != "all":
                raise
            echo(f"Remote {name}: {printable(getattr(exc, 'message', None) or exc)}", err=True)
            continue
        rows += [{**r, "remote": name} for r in found if isinstance(r, dict)]
    if as_json:
        echo(dump_json(rows))
        return
    echo(f"{'HOST':<12} {'ID':>4}  {'STATUS':<11} {'NAME':<24} {'MODEL':<28} RESULT")
    for r in rows:
        result = (r.get("result") or {}) if isinstance(r.get("result"), dict) else {}
        shown = (f"{result.get('metric') or ''} {metric(result.get('value'))}"
                 if isinstance(result.get("value"), (int, float)) else "-")
        echo(f"{cut(r['remote'] or 'local', 12):<12} {cut(r.get('id', '?'), 8):>4}  "
             f"{cut(r.get('status'), 11):<11} {cut(r.get('name') or '', 24):<24} "
             f"{cut(r.get('model_id') or '', 28):<28} {cut(shown, 16)}")


def echo_remote(name: str, argv: list[str]) -> None:
    """Run `hubtune ARGV` on remote `name` and print what it printed (already escaped
    there; escaped again here, as any text from another machine)."""
    with session(name) as s:
        out = call(s, argv)
    echo(out.rstrip("\n"))


def follow_remote(name: str, argv: list[str], *, retries: int = 30,
                  again: list[str] | None = None) -> None:
    """`runs follow` run there, its lines printed here as they come; its failure is this
    command's. A dropped connection (ssh's keep-alives notice a dead one) is opened
    again, up to `retries` times with a growing pause, and the follow goes on where it
    was: what was printed already is not printed again. The run trains on regardless.
    `again` is what is asked after a drop instead of `argv` (a resume is not resumed
    twice: the run is followed)."""
    import time

    from engine.remote.session import RemoteLost

    shown = _Printed()
    for attempt in range(retries + 1):
        try:
            with session(name) as s:
                shown.restart()
                answer = s.call(argv if attempt == 0 or again is None else again,
                                timeout=FOLLOW_SILENCE_S, on_output=shown.piece)
            break
        except RemoteLost as exc:  # a remote that answers wrongly is not asked again
            if attempt == retries:
                raise
            pause = min(2.0 * (attempt + 1), 30.0)
            echo(f"Lost {name} ({printable(exc, limit=200)}); trying again in {pause:g} s.",
                 err=True)
            time.sleep(pause)
    shown.flush()
    if answer.get("exit"):
        raise Failure(f"On {name}: {printable(answer.get('error') or 'failed')}")


class _Printed:
    """The lines a follow has printed, so a follow started again after a dropped
    connection prints only what comes after them."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._replay = 0
        self._partial = ""

    def restart(self) -> None:
        self._replay, self._partial = 0, ""

    def piece(self, text: str) -> None:
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        for line in complete:
            if self._replay < len(self.lines) and self.lines[self._replay] == line:
                self._replay += 1  # printed before the connection dropped
                continue
            self._replay = len(self.lines) + 1
            self.lines.append(line)
            _print_piece(line + "\n")

    def flush(self) -> None:
        if self._partial:
            _print_piece(self._partial)
            self._partial = ""


FOLLOW_SILENCE_S = 3600.0
"""How long a followed run may print nothing (a long evaluation) before the connection
is taken for dead."""


def _print_piece(text: str) -> None:
    click.echo(printable(text, multiline=True), nl=False)


def train_remote(name: str, cfg, *, detach: bool, queued: bool, processes: int,
                 parent_id: int | None = None) -> None:
    """`train CONFIG --remote NAME`: the run starts there (engine/remote/start.py) and is
    followed from here unless --detach or --queue."""
    from engine.remote.start import start_on_remote

    def copying(file: str) -> None:
        echo(f"Copying {printable(file, limit=60)} to {name} (once)…", err=True)

    with session(name) as s:
        answer = start_on_remote(s, cfg, detach=detach, queued=queued, processes=processes,
                                 parent_id=parent_id, on_copy=copying,
                                 on_output=_print_piece)
    if answer.get("exit"):
        raise Failure(f"On {name}: {printable(answer.get('error') or 'failed')}")
