"""Review from the command line: `runs errors`, `runs compare --examples`, the class
report of `runs show`, and the per-example rows the worker stores. Runs train in this
process through the worker's own entry (`run_worker`), so the store's rows are what a
real worker writes, without a worker process's start-up cost."""

from __future__ import annotations

import csv
import json

import pytest

from store import RunStore
from tests.support.cli_runner import hubtune
from tests.support.tests_helpers import config_for, train_in_process

pytestmark = pytest.mark.slow


def _train_in_process(cfg) -> int:
    return train_in_process(cfg, "sentiment.csv")


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory, tiny_bert, sentiment_csv):
    """A data directory with a well-trained run and a barely trained one on the same data
    and split, trained once for the module."""
    root = tmp_path_factory.mktemp("review")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBTUNE_HOME", str(root / "home"))
        good = _train_in_process(config_for(root, tiny_bert, sentiment_csv, epochs=10))
        weak = _train_in_process(config_for(root, tiny_bert, sentiment_csv, max_steps=1))
    return root / "home", good, weak


@pytest.fixture
def two_runs(trained_home, hubtune_home):
    """The module's two runs, in a copy of their data directory that is this test's own."""
    import shutil

    source, good, weak = trained_home
    shutil.copytree(source, hubtune_home)
    return good, weak


def _validation_rows(sentiment_csv):
    with open(sentiment_csv, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_errors_lists_the_worst_examples_with_their_inputs(two_runs, sentiment_csv):
    good, weak = two_runs
    store = RunStore()
    recorded = store.prediction_set(weak)
    assert recorded.examples == recorded.stored == 40 and recorded.loss_kind == "cross_entropy"
    assert recorded.step == store.get_run(weak).summary["model_step"]

    out = hubtune("runs", "errors", str(weak), "--limit", "5", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    errors = report["errors"]
    assert len(errors) == 5 and report["examples"] == 40
    losses = [e["loss"] for e in errors]
    assert losses == sorted(losses, reverse=True)
    worst_stored = store.worst_examples(weak, 1)[0]
    assert errors[0]["example"] == worst_stored.example
    rows = _validation_rows(sentiment_csv)
    for e in errors:
        # The input and label are the file's own row, re-read with the training rules.
        source = rows[e["row"] - 1]
        assert e["input"] == source["text"] and e["label"] == source["label"]
        assert e["correct"] == (e["predicted"] == e["label"])
        assert 0.5 <= e["confidence"] <= 1
    assert report["wrong"] == sum(not r.correct for r in store.example_results(weak).values())

    text = hubtune("runs", "errors", str(weak), "--limit", "3")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"Run {weak}: 3 highest-loss of 40 validation examples")
    assert len(lines) == 2 + 3 and rows[errors[0]["row"] - 1]["text"] in lines[2]


def test_compare_examples_shows_disagreements_and_who_is_right(two_runs):
    good, weak = two_runs
    store = RunStore()
    first, second = store.example_results(good), store.example_results(weak)
    expected = {i for i in first if first[i].predicted != second[i].predicted}
    assert expected  # one step of training still guesses; ten epochs learn the rule

    out = hubtune("runs", "compare", str(good), str(weak), "--examples", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["compared"] == 40 and report["disagree"] == len(expected)
    found = report["disagreements"]
    assert {d["example"] for d in found} == expected
    for d in found:
        predicted = d["predicted"]
        assert predicted[str(good)] != predicted[str(weak)]
        right = [i for i in (good, weak) if predicted[str(i)] == d["label"]]
        assert d["right"] == (right[0] if right else None)
    assert report["right"][str(good)] == sum(d["right"] == good for d in found)

    text = hubtune("runs", "compare", str(good), str(weak), "--examples")
    assert f"Runs {good} and {weak} disagree on {len(expected)} of 40" in text.stdout


def test_runs_show_prints_per_class_scores_and_the_confusion(two_runs):
    good, _ = two_runs
    shown = json.loads(hubtune("runs", "show", str(good), "--json").stdout)
    classes = shown["classes"]
    assert [c["label"] for c in classes["per_class"]] == ["negative", "positive"]
    assert sum(c["support"] for c in classes["per_class"]) == 40
    assert sum(map(sum, classes["confusion"])) == 40
    text = hubtune("runs", "show", str(good)).stdout
    assert "per class" in text and "confusion (rows true, columns predicted)" in text
    assert "negative" in text.split("per class")[1]


def test_review_refusals_are_one_sentence(two_runs, tmp_path, tiny_bert, sentiment_csv):
    good, weak = two_runs
    store = RunStore()
    bare = store.create_run(config_for(tmp_path, tiny_bert, sentiment_csv).to_dict())
    out = hubtune("runs", "errors", str(bare))  # queued: it has not evaluated yet
    assert out.returncode != 0 and "is still queued and has no evaluated examples" in out.stderr
    store.finish(bare, "failed", error="x")  # ended before any evaluation
    out = hubtune("runs", "errors", str(bare))
    assert out.returncode != 0 and "has no per-example results" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1

    other = tmp_path / "other.csv"
    rows = _validation_rows(sentiment_csv)
    with open(other, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows[::-1])
    cfg = config_for(tmp_path, tiny_bert, other, max_steps=1)
    shuffled = _train_in_process(cfg)
    out = hubtune("runs", "compare", str(good), str(shuffled), "--examples")
    assert out.returncode != 0 and "validated on different data" in out.stderr
    out = hubtune("runs", "compare", str(good), "--examples")
    assert out.returncode != 0 and "exactly two runs" in out.stderr

    # The data changed under a run: its examples no longer match, and it says so.
    sentiment_copy = tmp_path / "changed.csv"
    cfg = config_for(tmp_path, tiny_bert, sentiment_copy, max_steps=1)
    with open(sentiment_copy, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    changed = _train_in_process(cfg)
    flipped = [{"text": r["text"], "label": "negative" if r["label"] == "positive"
                else "positive"} for r in rows]
    with open(sentiment_copy, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["text", "label"])
        writer.writeheader()
        writer.writerows(flipped)
    out = hubtune("runs", "errors", str(changed))
    assert out.returncode != 0 and "data files changed since" in out.stderr


def test_deleting_a_run_takes_its_examples_along(two_runs):
    good, _ = two_runs
    store = RunStore()
    assert store.example_results(good)
    store.delete_run(good, remove_files=False)  # the model folder is the module's
    assert store.prediction_set(good) is None and not store.example_results(good)


def test_predict_file_keeps_rows_in_order_and_reproduces_the_runs_metric(tmp_path, tiny_bert,
                                                                         sentiment_csv):
    rows = _validation_rows(sentiment_csv)
    train_file, val_file = tmp_path / "train.csv", tmp_path / "val.csv"
    for path, part in ((train_file, rows[:120]), (val_file, rows[120:])):
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, ["text", "label"])
            writer.writeheader()
            writer.writerows(part)
    cfg = config_for(tmp_path, tiny_bert, train_file, epochs=2, validation=str(val_file))
    run_id = _train_in_process(cfg)
    summary = RunStore().get_run(run_id).summary

    out = tmp_path / "predicted.csv"
    result = hubtune("predict", str(run_id), "--file", str(val_file), "--out", str(out),
                     "--batch-size", "7")
    assert result.returncode == 0, result.stderr
    written = list(csv.DictReader(open(out, encoding="utf-8")))
    assert [r["text"] for r in written] == [r["text"] for r in rows[120:]]  # input order
    assert set(written[0]) == {"text", "label", "predicted", "score", "p_negative",
                               "p_positive"}
    for r in written:
        assert float(r["score"]) == pytest.approx(max(float(r["p_negative"]),
                                                      float(r["p_positive"])))
    accuracy = sum(r["predicted"] == r["label"] for r in written) / len(written)
    # The saved model is the kept one: its accuracy on the validation file is the run's.
    assert accuracy == pytest.approx(summary["best_accuracy"])
    assert f"accuracy {summary['best_accuracy']:.4f} on 40 labelled rows" in result.stdout
    # The per-example rows agree with the file's predictions too.
    stored = RunStore().example_results(run_id)
    assert [stored[i].predicted for i in range(40)] == [r["predicted"] for r in written]

    again = hubtune("predict", str(run_id), "--file", str(val_file), "--out", str(out))
    assert again.returncode != 0 and "already exists; pass --force" in again.stderr
    forced = hubtune("predict", str(run_id), "--file", str(val_file), "--out", str(out),
                     "--force", "--column", "label")
    assert forced.returncode == 0, forced.stderr
    missing = hubtune("predict", str(run_id), "--file", str(val_file), "--out",
                      str(tmp_path / "x.csv"), "--column", "nope")
    assert missing.returncode != 0 and "has no column 'nope'" in missing.stderr
    assert hubtune("predict", str(run_id), "--file", str(val_file)).returncode != 0


def test_predict_file_writes_whole_numbers_as_the_input_spelled_them(two_runs, tmp_path):
    """Whole numbers in a column with a blank cell (a label, a feature) come back as the
    input spelled them: 3, not 3.0 (pandas' own types would make those columns float)."""
    good, _ = two_runs
    data, out = tmp_path / "scored.csv", tmp_path / "out.csv"
    data.write_text("text,label,stars\nthe film was good,1,3\nthe day was awful,,4\n"
                    "a nice show,0,\n")
    result = hubtune("predict", str(good), "--file", str(data), "--out", str(out))
    assert result.returncode == 0, result.stderr
    with open(out, newline="", encoding="utf-8") as fh:
        written = list(csv.DictReader(fh))
    assert [(r["text"], r["label"], r["stars"]) for r in written] == [
        ("the film was good", "1", "3"), ("the day was awful", "", "4"),
        ("a nice show", "0", "")]
    assert "on 2 labelled rows" in result.stdout  # the blank label is no label
