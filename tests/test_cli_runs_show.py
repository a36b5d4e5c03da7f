"""`hubtune runs show` answers where a run comes from and what it changed, `runs compare`
aligns its columns, and the progress line pairs each evaluation with its own step. In
process, over a real store (no worker: the runs are recorded as a worker would)."""

from __future__ import annotations

import json

from engine.runs.lineage import config_diff, parents
from tests.support.cli_runner import hubtune
from tui.cli.output import cells

REPORT = {"classes": 2, "worst_only": False, "per_class": [[0, .8, .7, .75, 5],
                                                           [1, .7, .8, .75, 5]],
          "confused_pairs": [[0, 1, 2], [1, 0, 1]], "confusion": [[4, 1], [2, 3]]}


def _family(store):
    """A run, a fork of it with changed settings, and a run continuing from its model."""
    base = {"name": "base", "model": {"id": "org/tiny"}, "data": {"train": "t.csv"},
            "train": {"learning_rate": 5e-5, "epochs": 3}, "base_dir": "/a"}
    parent = store.create_run(base, name="base", model_id="org/tiny")
    forked = {**base, "name": "base-fork", "base_dir": "/b",
              "train": {"learning_rate": 1e-4, "epochs": 3.0}, "data": {"train": "t.csv",
                                                                       "limit": 600}}
    child = store.create_run(forked, name="base-fork", parent_id=parent, model_id="org/tiny")
    store.set_tags(child, ["lr-sweep"])
    store.set_notes(child, "higher rate")
    store.finish(child, "completed", summary={"final_accuracy": 0.8, "class_report": REPORT,
                                              "labels": ["neg", "pos"]})
    later = store.create_run({**base, "model": {"id": f"run:{child}"}}, name="next")
    return parent, child, later


def test_lineage_and_config_diff():
    assert [(p.run_id, p.kind) for p in parents(3, {"model": {"id": "run:1"}})] == [
        (3, "fork"), (1, "continues")]
    assert parents(None, {"model": {"id": "org/x"}}) == []
    changes = config_diff({"train": {"epochs": 3, "lr": 1.0}, "name": "a", "base_dir": "/x"},
                          {"train": {"epochs": 3.0, "lr": 2.0}, "name": "b", "data": {"k": 1}})
    # 3 and 3.0 are the same setting; name and base_dir are no change of settings.
    assert [(c.key, c.old, c.new) for c in changes] == [("data.k", None, 1),
                                                        ("train.lr", 1.0, 2.0)]


def test_runs_show_says_parent_diff_tags_notes_output_classes_and_config(store):
    parent, child, later = _family(store)
    out = hubtune("runs", "show", str(child))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert f"parent   fork of run {parent} base" in text
    assert "data.limit: null -> 600" in text and "train.learning_rate: 5e-05 -> 0.0001" in text
    assert "train.epochs" not in text.split("config")[0]  # 3 and 3.0: no change
    assert "tags     lr-sweep" in text and "notes    higher rate" in text
    assert f"output   {store.get_run(child).output_dir}" in text
    assert "confusion (rows true, columns predicted)" in text and "neg" in text
    assert "    train.learning_rate: 0.0001" in text and "    model.id: org/tiny" in text

    data = json.loads(hubtune("runs", "show", str(child), "--json").stdout)
    assert data["parents"] == [{"id": parent, "kind": "fork", "name": "base", "config_diff": [
        {"key": "data.limit", "old": None, "new": 600},
        {"key": "train.learning_rate", "old": 5e-05, "new": 0.0001}]}]
    seq = json.loads(hubtune("runs", "show", str(later), "--json").stdout)
    assert seq["parents"] == [{"id": child, "kind": "continues", "name": "base-fork",
                               "config_diff": []}]
    store.delete_run(child)
    gone = hubtune("runs", "show", str(later))
    assert f"continues from the model of run {child} (deleted since)" in gone.stdout


def test_runs_compare_aligns_long_and_wide_values(store):
    a = store.create_run({"model": {"id": "org/a"}, "train": {"learning_rate": 1e-3}},
                         name="a")
    b = store.create_run({"model": {"id": "org/日本語-bert-with-a-rather-long-name"},
                          "train": {"learning_rate": 5e-5}}, name="日本語")
    for run_id, acc in ((a, 0.5), (b, 0.75)):
        store.finish(run_id, "completed", summary={"final_accuracy": acc})
    out = hubtune("runs", "compare", str(a), str(b))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["run", str(a), "run", str(b)]
    # Every line ends at the same terminal column: right-aligned, wide characters counted
    # as two columns.
    assert len({cells(line) for line in lines}) == 1, lines
    assert any("日本語-bert" in line for line in lines)


def test_the_progress_line_shows_an_evaluation_only_at_its_own_step(store):
    from tui.cli.train import _progress_line, follow

    m = {"loss": 0.5, "total_steps": 20, "val_accuracy": 0.7}
    assert "val" not in _progress_line(20, m, evaluated=False)
    assert _progress_line(20, m, evaluated=True).endswith("val accuracy 0.700")

    run_id = store.create_run({"head": {"task": "text-classification"}}, name="r",
                              task="text-classification")
    store.log_metrics(run_id, [(10, 1.0, "loss", 0.9, 0.0), (10, 1.0, "val_accuracy", 0.6, 0.0),
                               (20, 2.0, "loss", 0.5, 0.0), (20, 2.0, "total_steps", 20, 0.0)])
    store.finish(run_id, "completed", summary={})
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        follow(store, run_id)
    lines = [line for line in buf.getvalue().splitlines() if line.startswith("step")]
    # Step 20 had no evaluation: its line does not pass step 10's off as its own.
    assert lines == ["step 20/20  loss 0.500"], lines
