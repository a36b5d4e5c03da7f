"""The `--remote NAME` side of `runs compare | errors | resume | export --metrics`,
`queue ls | slots` and `export ID DIR` (#37): each asks the remote's `hubtune serve
--stdio` over SSH (tui/cli/remote.py opens it) and prints or writes the answer here.

`runs compare` may mix machines: a run is `ID` (this machine's, or the `--remote`'s when
one is given), `NAME:ID` (remote NAME's) or `local:ID` (this machine's). Runs all of one
remote are compared there (so --examples and --sweep work too); runs of several machines
are read with `runs show --json` and compared here.

Files come back only into the local paths the user named; the remote writes nothing but
its own temporary export folder, which it removes. Imports neither textual nor torch.
"""

from __future__ import annotations

import json
from pathlib import Path

from tui.cli.base import Failure
from tui.cli.output import echo
from tui.safe_text import printable

LOCAL = "local"
"""`local:ID` names this machine's run wherever --remote points."""


def parse_refs(refs: tuple[str, ...], remote: str | None) -> list[tuple[str | None, int]]:
    """(remote name or None for this machine, run id) for each `ID`, `NAME:ID` or
    `local:ID`; a plain ID is the --remote's run when one is given."""
    from store.common import check_run_id

    out = []
    for ref in refs:
        name, _, number = ref.rpartition(":")
        try:
            run_id = check_run_id(int(number))
        except ValueError:
            raise Failure(f"{printable(ref, limit=60)} is not a run: give ID, NAME:ID (a "
                          "remote's run) or local:ID.") from None
        if name == LOCAL:
            out.append((None, run_id))
        else:
            out.append((name or remote, run_id))
    return out


def compare_everywhere(refs: list[tuple[str | None, int]], *, examples: bool,
                       as_json: bool) -> bool:
    """`runs compare` with remote runs; False when every run is this machine's (the
    caller compares them as ever)."""
    from tui.cli.remote import echo_remote, remote_names

    hosts = {name for name, _ in refs}
    if not hosts - {None}:
        return False
    json_flag = ["--json"] if as_json else []
    if len(hosts) == 1:  # one remote's runs: compared there, with all of compare's options
        (name,) = hosts
        remote_names(name)  # an unknown remote is its own sentence
        echo_remote(name, ["runs", "compare", *(str(i) for _, i in refs),
                           *(["--examples"] if examples else []), *json_flag])
        return True
    if examples:
        raise Failure("--examples compares two runs of one machine (it re-reads their "
                      "data there); give two runs of the same host.")
    if len(refs) < 2:
        raise Failure("Compare needs two or more runs, or --sweep ID.")
    _compare_mixed(refs, as_json)
    return True


def compare_sweep_there(name: str, sweep_id: str, as_json: bool) -> None:
    """`runs compare --sweep ID --remote NAME`: ranked on that machine."""
    from tui.cli.remote import echo_remote

    echo_remote(name, ["runs", "compare", "--sweep", sweep_id,
                       *(["--json"] if as_json else [])])


def _compare_mixed(refs: list[tuple[str | None, int]], as_json: bool) -> None:
    """Runs of several machines side by side: each remote's read with `runs show --json`
    over one session per remote, this machine's from its store."""
    from store.runs import compare_records
    from tui.cli.base import open_store
    from tui.cli.comparison import echo_comparison
    from tui.cli.remote import call, session
    from tui.remote_records import remote_run
    from tui.run_result import live_results, run_result

    found: dict[tuple[str | None, int], object] = {}
    local = [i for name, i in refs if name is None]
    if local:
        store = open_store()
        for run in live_results(store, [store.get_run(i) for i in dict.fromkeys(local)]):
            found[(None, run.id)] = run
    for name in dict.fromkeys(n for n, _ in refs if n is not None):
        with session(name) as s:
            for _, run_id in [r for r in refs if r[0] == name]:
                text = call(s, ["runs", "show", str(run_id), "--json"])
                try:
                    run = remote_run(name, json.loads(text))
                except ValueError:
                    run = None
                if run is None:
                    raise Failure(f"Remote {name} answered `runs show {run_id}` with something "
                                  "other than a run; is the same hubtune version installed?")
                found[(name, run_id)] = run
    runs = [found[ref] for ref in refs]
    labels = [f"run {i}" if name is None else f"{name}:{i}" for name, i in refs]
    echo_comparison(compare_records(runs), [run_result(r) for r in runs], labels, as_json,
                    remotes=[name for name, _ in refs])


def resume_remote(name: str, run_id: int, *, detach: bool, checkpoint: str | None) -> None:
    """`runs resume ID --remote NAME`: resumed there; followed from here unless --detach
    (after a dropped connection, with `runs follow` there)."""
    from tui.cli.remote import echo_remote, follow_remote

    argv = ["runs", "resume", str(run_id), *(["--checkpoint", checkpoint] if checkpoint
                                             else [])]
    if detach:
        echo_remote(name, [*argv, "--detach"])
        return
    follow_remote(name, argv, again=["runs", "follow", str(run_id)])


def export_metrics_remote(name: str, run_id: int, metrics_file: Path, force: bool) -> None:
    """`runs export ID --metrics FILE.csv --remote NAME`: the CSV printed there, written
    here (as the local export writes it: never over a file it did not make, unless
    --force, and never into hubtune's data folder)."""
    from engine.core.outputs import check_new_file, write_file
    from store import data_dir
    from tui.cli.remote import call, session

    if str(metrics_file) != "-":
        check_new_file(metrics_file, force=force, protected=data_dir())
    with session(name) as s:
        text = call(s, ["runs", "export", str(run_id), "--metrics", "-"])
    if str(metrics_file) == "-":
        echo(text.rstrip("\n"))
        return
    rows = max(0, len(text.rstrip("\n").splitlines()) - 1)

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    path = write_file(metrics_file, write, force=force, protected=data_dir())
    echo(f"Wrote {rows} rows of run {run_id} on {name} to {path}.")


def export_remote(name: str, run_id: int, target: Path, *, force: bool) -> tuple[Path, str,
                                                                                   dict]:
    """`export ID DIR --remote NAME`: the model exported there and sent back as a tar
    stream over the SSH session, unpacked into DIR here (regular files and folders only,
    nothing outside DIR). Returns (folder, how to load it, the run's config)."""
    import tempfile

    from engine.core.outputs import check_new_folder, fill_folder
    from store import data_dir
    from tui.cli.remote import session

    check_new_folder(target, force=force, protected=data_dir())  # before anything travels
    with tempfile.TemporaryFile() as tar_file:
        echo(f"Exporting run {run_id} on {name} and copying it here…", err=True)
        with session(name) as s:
            answer = s.fetch_export(run_id, tar_file.write)
        if answer.get("exit"):
            raise Failure(f"On {name}: {printable(answer.get('error') or 'failed')}")
        tar_file.seek(0)
        folder = fill_folder(target, lambda into: _unpack(tar_file, into, name),
                             force=force, protected=data_dir())
    config = answer.get("config") if isinstance(answer.get("config"), dict) else {}
    return folder, str(answer.get("loader") or "transformers"), config


def _unpack(tar_file, into: Path, name: str) -> None:
    """Unpack a remote's export into `into`: only regular files and folders with plain
    relative names (a hostile remote cannot write outside it or make links)."""
    import shutil
    import tarfile

    try:
        with tarfile.open(fileobj=tar_file, mode="r|") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if member.name.startswith("/") or ".." in parts or not parts or not (
                        member.isfile() or member.isdir()):
                    raise Failure(f"Remote {name} sent an export holding "
                                  f"{printable(member.name, limit=80)}, which is not a plain "
                                  "file of the folder; nothing was kept.")
                path = into.joinpath(*parts)
                if member.isdir():
                    path.mkdir(parents=True, exist_ok=True)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except tarfile.TarError as exc:
        raise Failure(f"Remote {name} sent an export that is not a whole tar stream "
                      f"({printable(exc, limit=120)}); try again.") from None


def echo_queue_remote(name: str, argv: list[str]) -> None:
    """`queue ls | slots --remote NAME`: what the remote's queue says."""
    from tui.cli.remote import echo_remote

    echo_remote(name, argv)
