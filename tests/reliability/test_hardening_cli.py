"""The CLI as a careless or hostile user meets it: untrusted text, overwrites, bad paths,
no terminal. In-process through click's runner (fast) except where a real process is
the point (no terminal)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from store import RunStore
from tui.cli import cli

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "x\x1b]0;pwned\x07\x1b[2J\x9b31m\r\u202eevil\nfake 999 row"
RAW = ("\x1b", "\x07", "\x9b", "\r", "\u202e")


def run_cli(*args: str, **kwargs):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False, **kwargs)


def one_sentence(result) -> str:
    """The error a command printed; it must be one line, with no traceback."""
    err = result.stderr if hasattr(result, "stderr") else result.output
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


@pytest.fixture
def hostile_runs(store):
    """Two runs whose every free-text field carries escapes, newlines and markup."""
    ids = []
    for n in range(2):
        run_id = store.create_run({"name": f"r{n}", "data": {"train": HOSTILE + str(n)}},
                                  name=f"[bold]r{n}[/]", model_id=HOSTILE, task="text-classification",
                                  dataset=HOSTILE)
        store.add_event(run_id, f"read column {HOSTILE}")
        store.set_notes(run_id, "line one\nline two [red]x[/]")
        store.set_tags(run_id, ["[blink]t[/]"])
        store.finish(run_id, "failed", error=f"Unknown label {HOSTILE}",
                     summary={"final_accuracy": 0.5, "loss": float("nan"),
                              "best_loss": float("inf")})
        ids.append(run_id)
    return ids


@pytest.mark.parametrize("args", [
    ("runs", "ls"), ("runs", "show", "{0}"), ("runs", "compare", "{0}", "{1}"),
    ("runs", "follow", "{0}"), ("runs", "ls", "--search", "r"),
])
def test_untrusted_text_never_reaches_the_terminal_raw(hostile_runs, args):
    result = CliRunner().invoke(cli, [a.format(*hostile_runs) for a in args])
    shown = result.output
    for raw in RAW:
        assert raw not in shown, (raw, shown)
    assert "\\x1b]0;pwned\\x07" in shown  # the escape is visible, not swallowed
    assert "[bold]r" in shown or args[1] != "ls"
    if args == ("runs", "ls"):
        rows = shown.splitlines()
        assert len(rows) == 1 + len(hostile_runs)  # a newline in a field makes no row
        assert all("fake 999 row" not in r or "\\n" in r for r in rows)


def test_json_stays_valid_and_has_no_nan(hostile_runs):
    for args in (["runs", "ls", "--json"], ["runs", "show", str(hostile_runs[0]), "--json"],
                 ["runs", "compare", *map(str, hostile_runs), "--json"]):
        out = run_cli(*args).output
        assert "NaN" not in out and "Infinity" not in out
        data = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
        assert "\x1b" not in out  # escaped as \u001b inside the strings
        if args[1] == "show":
            assert data["model_id"] == HOSTILE  # the value itself is kept exactly
            assert data["summary"]["loss"] is None and data["summary"]["best_loss"] is None


def test_metrics_export_never_overwrites_unasked(store, tmp_path, hubtune_home):
    run_id = store.create_run({})
    store.log_metrics(run_id, [(1, 0.0, "loss", 0.5, 0.0)])
    target = tmp_path / "metrics.csv"
    target.write_text("precious\n")

    result = CliRunner().invoke(cli, ["runs", "export", str(run_id), "--metrics", str(target)])
    assert result.exit_code != 0
    assert "already exists; pass --force" in one_sentence(result)
    assert target.read_text() == "precious\n"

    result = run_cli("runs", "export", str(run_id), "--metrics", str(target), "--force")
    assert result.exit_code == 0
    assert target.read_text().splitlines()[1].startswith("1,0.0,loss,0.5")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no leftovers


@pytest.mark.parametrize(("where", "message"), [
    ("home-db", "inside hubtune's data folder"),
    ("home-new", "inside hubtune's data folder"),
    ("folder", "is a folder; give a file name"),
    ("under-file", "is a file, not a folder"),
    ("missing-folder", "does not exist; create it first"),
    ("proc", "Cannot write /proc/"),
])
def test_metrics_export_to_a_bad_target_is_one_sentence(store, tmp_path, hubtune_home, where,
                                                        message):
    run_id = store.create_run({})
    store.log_metrics(run_id, [(1, 0.0, "loss", 0.5, 0.0)])
    (tmp_path / "afile").write_text("x")
    target = {
        "home-db": hubtune_home / "hubtune.db",
        "home-new": hubtune_home / "runs" / "export.csv",
        "folder": tmp_path,
        "under-file": tmp_path / "afile" / "m.csv",
        "missing-folder": tmp_path / "no" / "such" / "m.csv",
        "proc": Path("/proc/hubtune-metrics.csv"),
    }[where]
    for force in ([], ["--force"]):
        result = CliRunner().invoke(cli, ["runs", "export", str(run_id), "--metrics",
                                          str(target), *force])
        assert result.exit_code != 0
        assert message in one_sentence(result)
    # the database survived and still holds the run
    check = sqlite3.connect(hubtune_home / "hubtune.db")
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert RunStore().series(run_id, "loss").values == [0.5]


@pytest.mark.slow
def test_hubtune_without_a_terminal_exits_at_once(hubtune_home):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "tui.cli"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode != 0
    assert time.monotonic() - started < 30
    assert "only in a terminal" in one_sentence(result)
    assert "hubtune runs ls" in result.stderr


@pytest.mark.parametrize("args", [("runs", "ls"), ("runs", "show", "1"),
                                  ("runs", "export", "1", "--metrics", "/tmp/x.csv")])
def test_hubtune_home_that_is_a_file_is_one_sentence(tmp_path, monkeypatch, args):
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    monkeypatch.setenv("HUBTUNE_HOME", str(home))
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code != 0
    assert "is a file, not a folder; set HUBTUNE_HOME" in one_sentence(result)
    assert home.read_text() == "not a folder"


@pytest.mark.parametrize("args", [("cache", "ls"), ("cache", "rm", "a/b"),
                                  ("cache", "verify", "a/b"), ("hub", "download", "a/b")])
@pytest.mark.slow
def test_hf_home_that_is_a_file_is_one_sentence(tmp_path, monkeypatch, args):
    hf = tmp_path / "hf-file"
    hf.write_text("x")
    # huggingface_hub reads HF_HOME at import: the CLI runs as its own process here
    env = {**os.environ, "HF_HOME": str(hf), "HF_HUB_CACHE": str(hf / "hub")}
    result = subprocess.run([sys.executable, "-m", "tui.cli", *args], capture_output=True,
                            text=True, timeout=120, cwd=REPO, env=env)
    assert result.returncode != 0
    assert "is a file, not a folder; point HF_HOME" in one_sentence(result)


def test_tags_and_notes_with_control_characters_or_too_long_are_refused(store):
    run_id = store.create_run({}, name="ok")
    for args, message in [
        (["runs", "tag", str(run_id), "a\x1b[2Jb"], "control character"),
        (["runs", "tag", str(run_id), "t" * 65], "keep tags to 64"),
        (["runs", "note", str(run_id), "n" * 10_001], "keep it to 10,000"),
        (["runs", "note", str(run_id), "bell\x07"], "control character"),
    ]:
        result = CliRunner().invoke(cli, args)
        assert result.exit_code != 0
        assert message in one_sentence(result)
    assert RunStore().get_run(run_id).tags == ()


def test_data_preview_shows_hostile_cells_escaped_one_row_each(tmp_path):
    data = tmp_path / "evil.csv"
    data.write_text('text,"lab\x1b[2Jel"\n"a\x1b]0;pwned\x07 b",pos\n"two\nlines",neg\n',
                    encoding="utf-8")
    out = run_cli("data", "preview", str(data), "--label-column", "lab\x1b[2Jel").output
    for raw in RAW:
        assert raw not in out
    assert "a\\x1b]0;pwned\\x07 b" in out and "lab\\x1b[2Jel" in out
    (row,) = [line for line in out.splitlines() if "lines" in line and "neg" in line]
    assert "two\\nlines" in row  # the newline stayed inside its cell: no extra row


@pytest.mark.slow
def test_hub_search_and_info_print_hostile_fields_escaped(hf_cache, tmp_path, monkeypatch):
    from tests.support.hub_server import HubServer, Repo

    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "README.md").write_text("# Card \x1b]0;pwned\x07\n\nBody \x1b[2J\x9b31m\n",
                                      encoding="utf-8")
    (folder / "w\x1b[2J.bin").write_bytes(b"\0" * 16)
    repos = [Repo("evil/detail", folder, pipeline_tag="task\x1b]0;pwned\x07\nfake row",
                  library="lib\x9b31m", downloads=1000)]
    with HubServer(repos) as server:
        env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": server.url,
               "HF_HUB_CACHE": str(hf_cache)}
        for args in (["hub", "search", "evil"], ["hub", "info", "evil/detail"],
                     ["hub", "search", "evil", "--json"]):
            result = subprocess.run([sys.executable, "-m", "tui.cli", *args], env=env,
                                    capture_output=True, text=True, timeout=120, cwd=REPO)
            assert result.returncode == 0, result.stderr
            for raw in RAW:
                assert raw not in result.stdout, (args, raw)
            if "--json" in args:
                assert json.loads(result.stdout)[0]["task"].startswith("task\x1b]0;pwned")
            else:
                assert "\\x1b]0;pwned\\x07" in result.stdout
        assert "w\\x1b[2J.bin" in subprocess.run(
            [sys.executable, "-m", "tui.cli", "hub", "info", "evil/detail"], env=env,
            capture_output=True, text=True, timeout=120, cwd=REPO).stdout


def test_a_reader_that_goes_away_ends_the_command_quietly(store, hubtune_home):
    """`hubtune runs ls | head -1`: once the reader closes the pipe the command stops with
    SIGPIPE's status and says nothing (no "Error: ... Broken pipe" on the terminal)."""
    for i in range(40):
        store.create_run({"model": {"id": "m"}}, name=f"run-{i}", model_id="m", task="t")
    proc = subprocess.Popen([sys.executable, "-m", "tui.cli", "runs", "ls", "--limit", "40"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "HUBTUNE_HOME": str(hubtune_home)})
    proc.stdout.close()  # before its first line: every write meets a closed pipe
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 141, err
    assert err == b""
