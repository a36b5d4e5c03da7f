"""Remotes over SSH (#37): `hubtune remote add|ls|rm|test` and `runs ls|show|stop --remote`
against a real sshd on loopback (tests/support/sshd.py), whose `hubtune serve --stdio`
runs over a HUBTUNE_HOME of its own. Only the ssh client's key and known-hosts file are
the tests' (HUBTUNE_SSH_COMMAND), as a user's ~/.ssh/config would be."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from store import RunStore
from tests.support.cli_runner import hubtune, ok
from tests.support.sshd import free_port, start_sshd

HUBTUNE = str(Path(sys.executable).parent / "hubtune")
HOSTILE = "x'; touch /tmp/hubtune-pwned-$USER; echo \"$(id)\" `id` & touch /tmp/hubtune-pwned-2 #"


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    if server is None:
        pytest.skip("no sshd here (apt-get install openssh-server)")
    yield server
    server.stop()


@pytest.fixture
def box(sshd, tmp_path, monkeypatch, hubtune_home):
    """Remote `box`: this machine over ssh, with its own HUBTUNE_HOME."""
    monkeypatch.setenv("HUBTUNE_SSH_COMMAND", sshd.ssh_command)
    home = tmp_path / "remote-home"
    ok("remote", "add", "box", f"{sshd.user}@127.0.0.1", "--port", str(sshd.port),
       "--hubtune", HUBTUNE, "--home", str(home))
    return home


def test_add_list_test_and_remove_a_remote(box, sshd):
    listed = json.loads(ok("remote", "ls", "--json").stdout)
    assert listed == [{"name": "box", "host": "127.0.0.1", "user": sshd.user,
                       "port": sshd.port, "hubtune": HUBTUNE, "home": str(box)}]
    tested = ok("remote", "test", "box").stdout
    assert tested.startswith("Remote box answers: hubtune 0.1.0, ") and "slots" in tested
    again = hubtune("remote", "add", "box", "127.0.0.1")
    assert again.returncode == 1 and "already" in again.stderr
    assert ok("remote", "rm", "box").stdout.strip() == "Removed remote box."
    gone = hubtune("remote", "test", "box")
    assert gone.returncode == 1 and "There is no remote named 'box'" in gone.stderr


def test_runs_of_a_remote_listed_shown_and_stopped_with_hostile_names(box, store, tmp_path):
    remote_store = RunStore(box / "hubtune.db")
    remote_store.set_queue_paused(True)
    there = remote_store.create_run({"model": {"id": "m"}}, name=HOSTILE, model_id="m",
                                    task="text-classification", dataset="d", queue_slots=1)
    remote_store.close()
    here = store.create_run({"model": {"id": "l"}}, name="local-run", model_id="l",
                            task="text-classification", dataset="d")
    rows = json.loads(ok("runs", "ls", "--remote", "box", "--json").stdout)
    assert [(r["id"], r["name"], r["remote"]) for r in rows] == [(there, HOSTILE, "box")]
    everywhere = json.loads(ok("runs", "ls", "--remote", "all", "--json").stdout)
    assert {(r["id"], r["remote"]) for r in everywhere} == {(here, None), (there, "box")}
    table = ok("runs", "ls", "--remote", "all").stdout
    assert table.splitlines()[0].startswith("HOST") and "box" in table and "local" in table
    shown = json.loads(ok("runs", "show", str(there), "--remote", "box", "--json").stdout)
    assert shown["name"] == HOSTILE and shown["status"] == "queued"
    stopped = ok("runs", "stop", str(there), "--remote", "box").stdout
    assert stopped.strip() == f"Removed run {there} from the queue."
    assert RunStore(box / "hubtune.db").get_run(there).status == "stopped"
    assert not list(Path("/tmp").glob("hubtune-pwned-*")), "a run name reached a shell"
    missing = hubtune("runs", "show", "999", "--remote", "box")
    assert missing.returncode == 1 and missing.stderr.startswith("Error: On box: ")


def test_an_unreachable_remote_is_one_sentence_and_the_others_still_list(box, store,
                                                                         monkeypatch):
    ok("remote", "add", "dead", "127.0.0.1", "--port", str(free_port()), "--hubtune", HUBTUNE)
    here = store.create_run({"model": {"id": "l"}}, name="local-run", model_id="l",
                            task="text-classification", dataset="d")
    alone = hubtune("runs", "ls", "--remote", "dead")
    assert alone.returncode == 1
    assert "Remote dead cannot be reached: " in alone.stderr
    assert "Connection refused" in alone.stderr and len(alone.stderr.splitlines()) == 1
    everywhere = hubtune("runs", "ls", "--remote", "all", "--json")
    assert everywhere.returncode == 0
    assert [r["id"] for r in json.loads(everywhere.stdout)] == [here]
    assert "Remote dead" in everywhere.stderr


def test_another_protocol_names_both_versions(box, tmp_path):
    fake = tmp_path / "old-hubtune"
    fake.write_text("#!/bin/sh\necho '{\"hubtune\": \"0.0.9\", \"protocol\": 0}'\ncat >/dev/null\n")
    fake.chmod(0o755)
    ok("remote", "add", "old", "127.0.0.1", "--port", str(_port()), "--hubtune", str(fake))
    result = hubtune("remote", "test", "old")
    assert result.returncode == 1
    assert ("Remote old runs hubtune 0.0.9 (protocol 0); this machine runs hubtune 0.1.0 "
            "(protocol 1): install the same version on both.") in result.stderr


def _port() -> int:
    return json.loads(ok("remote", "ls", "--json").stdout)[0]["port"]


def test_the_server_runs_only_hubtunes_own_listed_commands(hubtune_home):
    from tui.cli import cli
    from tui.cli.serve import answer as serve

    def answer(request):
        return serve(request, None, cli)

    refused = answer({"argv": ["export", "1", "/tmp/x"]})
    assert refused["exit"] == 2 and "may not run `hubtune export 1`" in refused["error"]
    assert answer({"argv": "runs ls"})["error"] == "A request's argv is a list of strings."
    listed = answer({"argv": ["runs", "ls", "--json"]})
    assert listed["exit"] == 0 and json.loads(listed["stdout"]) == []
    missing = answer({"argv": ["runs", "show", "7"]})
    assert missing["exit"] == 1 and "There is no run 7" in missing["error"]


@pytest.mark.slow  # a real (tiny) training run on the remote, followed to its end
def test_a_run_started_there_is_followed_through_a_dropped_connection(
        box, sshd, tmp_path, tiny_bert, sentiment_csv):
    import os
    import subprocess
    import time

    import yaml

    config = tmp_path / "there.yaml"
    config.write_text(yaml.safe_dump({
        "name": "over-ssh", "model": {"id": str(tiny_bert)},
        "data": {"train": sentiment_csv.name, "max_length": 32},
        "train": {"epochs": 4, "batch_size": 16}}))
    (tmp_path / sentiment_csv.name).write_bytes(sentiment_csv.read_bytes())
    started = hubtune("train", str(config), "--remote", "box", "--detach")
    assert started.returncode == 0, started.stderr
    assert "Copying sentiment.csv to box" in started.stderr
    run_id = int(started.stdout.splitlines()[0])
    follow = subprocess.Popen([sys.executable, "-m", "tui.cli", "runs", "follow", str(run_id),
                               "--remote", "box"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    remote_db = box / "hubtune.db"
    deadline = time.monotonic() + 120
    while RunStore(remote_db).get_run(run_id).status == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1.0)  # the follow is connected and printing
    killed = _kill_ssh_clients(sshd)  # the connection drops mid-follow
    out, err = follow.communicate(timeout=300)
    assert killed and follow.returncode == 0, err
    assert "Lost box" in err and "trying again" in err
    assert out.count("Run completed") == 1, out  # nothing printed twice after the reconnect
    there = RunStore(remote_db).get_run(run_id)
    assert there.status == "completed" and there.name == "over-ssh"
    copied = Path(there.config["data"]["train"])
    assert copied.read_bytes() == sentiment_csv.read_bytes() and box in copied.parents
    again = hubtune("train", str(config), "--remote", "box", "--detach")
    assert again.returncode == 0  # the data asked for by its content: not copied again
    assert len(list((box / "remote-data").rglob("*.csv"))) == 1
    shown = json.loads(ok("runs", "show", str(run_id), "--remote", "box", "--json").stdout)
    assert shown["result"]["value"] is not None


def _kill_ssh_clients(sshd) -> int:
    """End the ssh clients this test's follow opened (their command line names the test
    server's client key); returns how many."""
    import os
    import signal

    key = sshd.ssh_command.split(" -i ")[1].split()[0].encode()
    killed = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if key in cmdline and b"serve" in cmdline and cmdline.startswith(b"/usr/bin/ssh"):
            os.kill(int(pid), signal.SIGKILL)
            killed += 1
    return killed
