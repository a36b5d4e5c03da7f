"""Remotes over SSH (#37): `hubtune remote add|ls|rm|test` and `runs ls|show|stop --remote`
against a real sshd on loopback (tests/support/sshd.py), whose `hubtune serve --stdio`
runs over a HUBTUNE_HOME of its own. Only the ssh client's key and known-hosts file are
the tests' (HUBTUNE_SSH_COMMAND), as a user's ~/.ssh/config would be."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from engine.remote.session import PROTOCOL
from store import RunStore
from tests.support.cli_runner import hubtune, ok
from tests.support.sshd import free_port, kill_clients

HUBTUNE = str(Path(sys.executable).parent / "hubtune")
HOSTILE = "x'; touch /tmp/hubtune-pwned-$USER; echo \"$(id)\" `id` & touch /tmp/hubtune-pwned-2 #"


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
            f"(protocol {PROTOCOL}): install the same version on both.") in result.stderr


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
    # A remote `train`: its config and --processes/--queue/--detach only, no code to
    # trust, nothing written outside this machine's hubtune home.
    plain = "model: {id: m}\ndata: {train: t.csv}\n"
    for argv, config, words in (
            (["train", "@config", "--nnodes", "2"], plain, "--nnodes is refused"),
            (["train", "@config", "--set", "train.epochs=1"], plain, "--set is refused"),
            (["train", "@config"], plain.replace("{id: m}", "{id: m, trust_remote_code: true}"),
             "may not trust code"),
            (["train", "@config"], plain + "train: {report_dir: /etc}\n", "report_dir")):
        refused = answer({"argv": argv, "files": {"config": config}})
        assert refused["exit"] == 2 and words in refused["error"], refused


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
        "train": {"epochs": 2, "batch_size": 16}}))
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
    killed = kill_clients(sshd)  # the connection drops mid-follow
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


def _fake_ssh(tmp_path: Path, monkeypatch, body: str) -> None:
    """HUBTUNE_SSH_COMMAND as a script that plays a hostile remote (no sshd needed), and
    remote `evil` reached through it."""
    fake = tmp_path / "fake-ssh"
    fake.write_text("#!/bin/sh\n" + body)
    fake.chmod(0o755)
    monkeypatch.setenv("HUBTUNE_SSH_COMMAND", str(fake))
    ok("remote", "add", "evil", "127.0.0.1")


HELLO = f"echo '{{\"hubtune\": \"0.1.0\", \"protocol\": {PROTOCOL}}}'\nread request\n"


@pytest.mark.parametrize(("body", "args", "said"), [
    ("printf '\\377\\376 not utf-8\\n'\ncat >/dev/null\n", ["remote", "test", "evil"],
     "answered with something other than hubtune's protocol"),
    (HELLO + "echo '{\"id\": 1, \"exit\": 0, \"stdout\": \"[oops\"}'\ncat >/dev/null\n",
     ["runs", "ls", "--remote", "evil"], "Remote evil answered with something other than a JSON"),
    (HELLO + "echo '{\"id\": 1, \"exit\": 0, \"stdout\": \"7\"}'\ncat >/dev/null\n",
     ["remote", "test", "evil"], "Remote evil answered with something other than a JSON"),
    (HELLO + "head -c 5000 /dev/zero | tr '\\000' x\nsleep 30\n",
     ["runs", "ls", "--remote", "evil"], "sent a line longer than 1,000 characters"),
    ("sleep 30\n", ["remote", "test", "evil"], "Remote evil did not answer within 1 s"),
    ("echo 'Welcome to the box!'\ncat >/dev/null\n", ["runs", "follow", "1", "--remote",
                                                       "evil"],
     "answered with something other than hubtune's protocol"),  # not tried again and again
])
def test_a_hostile_remote_is_one_sentence_never_a_hang_or_a_traceback(
        tmp_path, monkeypatch, body, args, said):
    import time

    from engine.remote import session

    monkeypatch.setattr(session, "MAX_LINE_CHARS", 1000)
    monkeypatch.setattr(session, "CONNECT_TIMEOUT_S", 1.0)
    _fake_ssh(tmp_path, monkeypatch, body)
    began = time.monotonic()
    result = hubtune(*args)  # in this process: a traceback fails the test
    assert result.returncode == 1 and said in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and time.monotonic() - began < 15


def test_odd_rows_from_a_remote_are_listed_not_a_crash(tmp_path, monkeypatch):
    rows = [{"id": [1], "status": {"a": 1}, "name": "\x1b]0;x\x07"}, 5]
    answer = tmp_path / "answer"
    answer.write_text(json.dumps({"id": 1, "exit": 0, "stdout": json.dumps(rows)}) + "\n")
    _fake_ssh(tmp_path, monkeypatch, HELLO + f"cat {answer}\ncat >/dev/null\n")
    table = ok("runs", "ls", "--remote", "evil").stdout
    assert "evil" in table.splitlines()[1] and "\x1b" not in table


def test_a_failed_open_leaves_no_ssh_process_behind(tmp_path, monkeypatch):
    from engine.remote.session import RemoteError, RemoteSession
    from store.remotes import Remote

    pid_file = tmp_path / "pid"
    _fake_ssh(tmp_path, monkeypatch, f"echo $$ > {pid_file}\n"
              "echo '{\"hubtune\": \"0.0.9\", \"protocol\": 0}'\ncat >/dev/null\n")
    with pytest.raises(RemoteError, match="protocol 0"):
        RemoteSession(Remote("evil", "127.0.0.1"), local_version="0.1.0")
    assert not Path(f"/proc/{pid_file.read_text().strip()}").exists()


def test_the_remote_command_line_quotes_everything_and_expands_only_a_leading_tilde(
        tmp_path):
    import subprocess

    from engine.remote.session import remote_command
    from store.remotes import Remote

    script = tmp_path / "venv" / "bin" / "hubtune"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\nprintf '%s\\n' \"$HUBTUNE_HOME\" \"$@\"\n")
    script.chmod(0o755)
    remote = Remote("r", "h", hubtune="~/venv/bin/hubtune --x 'a b;$(id)'", home=HOSTILE)
    line = remote_command(remote)
    ran = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert ran.stdout.splitlines() == [HOSTILE, "--x", "a b;$(id)", "serve", "--stdio"]
    assert not list(Path("/tmp").glob("hubtune-pwned-*")), "a remote's record reached a shell"


def test_the_server_outlives_malformed_requests_and_refuses_chained_remotes(hubtune_home):
    from click.testing import CliRunner

    from tui.cli import cli

    requests = [{"id": 1, "has": "x"}, {"id": 2, "put": {"sha": "0" * 64, "name": "a",
                                                          "data": 5}},
                {"id": 3, "argv": ["runs", "ls", "--remote", "all"]}, {"id": 4, "ping": True}]
    result = CliRunner().invoke(cli, ["serve", "--stdio"],
                                input="".join(json.dumps(r) + "\n" for r in requests))
    assert result.exception is None, result.exception
    answers = [json.loads(line) for line in result.stdout.splitlines()[1:]]
    assert [a["id"] for a in answers] == [1, 2, 3, 4] and answers[-1]["pong"] is True
    assert answers[0]["error"] and answers[1]["error"]
    assert answers[2]["error"] == "A remote may not use --remote there."


def test_a_remote_that_reads_nothing_cannot_hang_a_copy(tmp_path, monkeypatch):
    import time

    from engine.remote import session
    from store.remotes import Remote

    monkeypatch.setattr(session, "SEND_TIMEOUT_S", 1.0)
    _fake_ssh(tmp_path, monkeypatch, HELLO + "echo '{\"id\": 1, \"path\": null}'\nsleep 30\n")
    data = tmp_path / "big.csv"
    data.write_bytes(b"text,label\n" + b"x" * (2 << 20))
    began = time.monotonic()
    with pytest.raises(session.RemoteError, match="took nothing sent to it for 1 s"), \
            session.RemoteSession(Remote("evil", "127.0.0.1"), local_version="0.1.0") as s:
        s.send_file(data)
    assert time.monotonic() - began < 10
