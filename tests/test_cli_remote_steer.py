"""The rest of the CLI's `--remote` (#37): `runs compare` mixing machines, `runs errors`,
`runs resume`, `runs export --metrics`, `runs metrics`, `queue ls | slots` and `export ID
DIR` bringing a remote's model folder back, against a real sshd on loopback
(tests/support/sshd.py). The remote's HUBTUNE_HOME holds two runs trained once for the
module (in this process, as tests/test_cli_review.py trains them)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from engine.remote.session import PROTOCOL
from store import RunStore
from tests.support.cli_runner import hubtune, ok
from tests.support.tests_helpers import config_for, train_in_process

pytestmark = pytest.mark.slow  # two tiny runs trained for the module, ssh per command

HUBTUNE = str(Path(sys.executable).parent / "hubtune")


@pytest.fixture(scope="module")
def far_home(tmp_path_factory, tiny_bert, sentiment_csv):
    """The remote's data directory: a trained run and a one-step one on the same data."""
    root = tmp_path_factory.mktemp("far")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBTUNE_HOME", str(root / "home"))
        good = train_in_process(config_for(root, tiny_bert, sentiment_csv, epochs=1),
                                "sentiment.csv")
        weak = train_in_process(config_for(root, tiny_bert, sentiment_csv, max_steps=1),
                                "sentiment.csv")
    return root / "home", good, weak


@pytest.fixture
def box(sshd, far_home, monkeypatch, hubtune_home):
    """Remote `box`: this machine over ssh, its HUBTUNE_HOME the module's trained one."""
    monkeypatch.setenv("HUBTUNE_SSH_COMMAND", sshd.ssh_command)
    home, good, weak = far_home
    ok("remote", "add", "box", f"{sshd.user}@127.0.0.1", "--port", str(sshd.port),
       "--hubtune", HUBTUNE, "--home", str(home))
    return home, good, weak


def test_compare_mixes_this_machines_run_with_a_remotes(box, store):
    home, good, weak = box
    here = store.create_run({"model": {"id": "near"}, "train": {"epochs": 9}}, name="near",
                            model_id="near", task="text-classification", dataset="d")
    mixed = json.loads(ok("runs", "compare", str(here), f"box:{good}", "--json").stdout)
    assert mixed["runs"] == [here, good] and mixed["remotes"] == [None, "box"]
    assert mixed["config_diff"]["train.epochs"] == [9, 1]
    assert mixed["results"][1]["value"] is not None and mixed["results"][0]["value"] is None
    text = ok("runs", "compare", f"box:{good}", f"local:{here}", "--remote", "box").stdout
    assert text.splitlines()[0].split() == [f"box:{good}", "run", str(here)]
    # Runs all of one remote are compared there: --examples re-reads their data there.
    there = json.loads(ok("runs", "compare", str(good), str(weak), "--remote", "box",
                          "--examples", "--json").stdout)
    assert there["runs"] == [good, weak] and there["compared"] > 0
    refused = hubtune("runs", "compare", str(here), f"box:{good}", "--examples")
    assert refused.returncode == 1 and "two runs of the same host" in refused.stderr
    bad = hubtune("runs", "compare", "box:x", str(here))
    assert bad.returncode == 1 and "is not a run: give ID, NAME:ID" in bad.stderr


def test_errors_metrics_and_queue_of_a_remote(box, tmp_path):
    home, good, weak = box
    errors = json.loads(ok("runs", "errors", str(weak), "--remote", "box", "--limit", "3",
                           "--json").stdout)
    assert errors["run"] == weak and len(errors["errors"]) == 3

    # The CSV is printed there and written here, never over a file it did not make.
    out = tmp_path / "m.csv"
    said = ok("runs", "export", str(good), "--metrics", str(out), "--remote", "box").stdout
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["step", "epoch", "name", "value", "time_unix"]
    assert said.strip() == f"Wrote {len(rows) - 1} rows of run {good} on box to {out}."
    there = RunStore(home / "hubtune.db").metric_rows(good)
    assert len(rows) - 1 == len(there) and {r[2] for r in rows[1:]} >= {"loss"}
    again = hubtune("runs", "export", str(good), "--metrics", str(out), "--remote", "box")
    assert again.returncode == 1 and "already exists; pass --force" in again.stderr
    refused = hubtune("runs", "export", str(good), "--to", "tensorboard", str(tmp_path),
                      "--remote", "box")
    assert refused.returncode == 1 and "export one run's --metrics" in refused.stderr

    slots = json.loads(ok("queue", "slots", "--remote", "box", "--json").stdout)
    assert slots and all("slot" in s for s in slots)
    queued = json.loads(ok("queue", "ls", "--remote", "box", "--json").stdout)
    assert queued == {"paused": False, "runs": []}


def test_runs_metrics_gives_the_points_after_a_step(box, monkeypatch):
    home, good, _ = box
    monkeypatch.setenv("HUBTUNE_HOME", str(home))  # the command itself, on that store
    full = json.loads(ok("runs", "metrics", str(good), "--name", "loss", "--json").stdout)
    steps = full["series"]["loss"]["steps"]
    assert steps == sorted(steps) and len(steps) > 3 and "loss" in full["latest"]
    newer = json.loads(ok("runs", "metrics", str(good), "--name", "loss", "--after-step",
                          str(steps[2]), "--json").stdout)
    assert newer["series"]["loss"]["steps"] == steps[3:]
    assert "loss" in ok("runs", "metrics", str(good)).stdout


def test_resume_of_a_remote_run_is_asked_there(box):
    _, good, _ = box
    done = hubtune("runs", "resume", str(good), "--remote", "box", "--detach")
    assert done.returncode == 1 and done.stderr.startswith("Error: On box: ")
    assert "completed" in done.stderr


def test_export_brings_a_remotes_model_folder_back(box, tmp_path):
    home, good, weak = box
    target = tmp_path / "exported"
    said = ok("export", str(good), str(target), "--remote", "box")
    assert f"Exported run {good} to {target}" in said.stdout
    assert "Exporting run" in said.stderr
    names = {p.name for p in target.iterdir()}
    assert {"config.json", "README.md"} <= names and any(n.endswith(".safetensors")
                                                        for n in names)
    config = json.loads((target / "config.json").read_text())
    assert config["id2label"]
    assert not list((home / "remote-exports").glob("*/*")), "the remote kept its copy"
    again = hubtune("export", str(good), str(target), "--remote", "box")
    assert again.returncode == 1 and "is not empty" in again.stderr
    missing = hubtune("export", "999", str(tmp_path / "none"), "--remote", "box")
    assert missing.returncode == 1 and "On box: There is no run 999" in missing.stderr
    assert not (tmp_path / "none").exists()


def test_the_server_exports_metrics_only_as_printed_and_never_writes_there(hubtune_home):
    from tui.cli import cli
    from tui.cli.serve import answer

    for argv in (["runs", "export", "1", "--metrics", "/tmp/x.csv"],
                 ["runs", "export", "1", "--to", "tensorboard", "/tmp/x"],
                 ["runs", "export", "1", "--metrics", "-", "--force"]):
        refused = answer({"argv": argv}, None, cli)
        assert refused["exit"] == 2 and "only as `runs export ID --metrics -`" in \
            refused["error"], argv


def test_a_hostile_export_stream_writes_nothing_outside_the_folder(tmp_path):
    import tarfile

    from tui.cli.base import Failure
    from tui.cli.remote_steer import _unpack

    for name, kind in (("../evil", tarfile.REGTYPE), ("/abs", tarfile.REGTYPE),
                       ("link", tarfile.SYMTYPE)):
        data = io.BytesIO()
        with tarfile.open(fileobj=data, mode="w") as tar:
            member = tarfile.TarInfo(name)
            member.type = kind
            member.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            tar.addfile(member, io.BytesIO(b""))
        data.seek(0)
        into = tmp_path / "into"
        into.mkdir(exist_ok=True)
        with pytest.raises(Failure, match="not a plain file of the folder"):
            _unpack(data, into, "evil")
    assert not (tmp_path / "evil").exists() and not list((tmp_path / "into").iterdir())


def test_the_server_refuses_to_reach_its_own_remotes_through_compare(hubtune_home):
    from tui.cli import cli
    from tui.cli.serve import answer

    refused = answer({"argv": ["runs", "compare", "1", "other:2"]}, None, cli)
    assert refused["exit"] == 2 and refused["error"] == "A remote may not use --remote there."


def test_a_resume_followed_through_a_dropped_connection_is_not_resumed_twice(
        tmp_path, monkeypatch):
    """The first connection drops before the remote answers `runs resume`; the second
    follows the run instead of resuming it again (a fake ssh plays the remote)."""
    count, asked = tmp_path / "count", tmp_path / "asked"
    fake = tmp_path / "fake-ssh"
    fake.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {count} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {count}\n"
        f"echo '{{\"hubtune\": \"0.1.0\", \"protocol\": {PROTOCOL}}}'\n"
        f"read request; echo \"$request\" >> {asked}\n"
        "if [ $n -eq 1 ]; then exit 0; fi\n"
        "echo '{\"id\": 1, \"chunk\": \"Run 5 completed\\\\n\"}'\n"
        "echo '{\"id\": 1, \"exit\": 0, \"stdout\": \"\"}'\n"
        "cat >/dev/null\n")
    fake.chmod(0o755)
    monkeypatch.setenv("HUBTUNE_SSH_COMMAND", str(fake))
    ok("remote", "add", "evil", "127.0.0.1")
    result = hubtune("runs", "resume", "5", "--remote", "evil")
    assert result.returncode == 0, result.stderr
    assert "Lost evil" in result.stderr and result.stdout == "Run 5 completed\n"
    requests = [json.loads(line)["argv"] for line in asked.read_text().splitlines()]
    assert requests == [["runs", "resume", "5"], ["runs", "follow", "5"]]
