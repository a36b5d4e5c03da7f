"""Review beyond classification: token classification, question answering and the
language models record per-example rows at evaluation, ranked by their own metric, and
`runs errors` / `runs compare --examples` show them with their inputs. Runs train in this
process through the worker's entry (`run_worker`), as in test_cli_review."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.core.config import RunConfig
from store import RunStore
from tests.support.cli_runner import hubtune
from tests.support.tests_helpers import train_in_process


def _train_in_process(cfg: RunConfig) -> int:
    return train_in_process(cfg, "data")


def _config(root, model, task: str, data, data_keys=None, **train) -> RunConfig:
    return RunConfig.from_dict({
        "name": task, "model": {"id": str(model)}, "head": {"task": task},
        "data": {"train": str(data), "validation_split": 0.25, "max_length": 32,
                 **(data_keys or {})},
        "train": {"epochs": 2, "batch_size": 8, "learning_rate": 3e-3, "log_every": 1,
                  "seed": 0, "warmup_ratio": 0.0, **train},
        "base_dir": str(root)})


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory):
    """One data directory with runs of each task, trained once for the module."""
    from tests.support import task_data as td
    from tests.support.tiny_models import make_tiny_family

    root = tmp_path_factory.mktemp("review-tasks")
    bert = make_tiny_family("bert", root / "bert")
    gpt2 = make_tiny_family("gpt2", root / "gpt2")
    tokens = td.write_token_jsonl(root / "ner.jsonl")
    qa = td.write_qa_jsonl(root / "qa.jsonl")
    texts = td.write_text_csv(root / "texts.csv", rows=40)
    pairs = td.write_seq2seq_csv(root / "s2s.csv", rows=40)
    digits = td.write_digits_folder(root / "digits", per_class=8, classes=range(3))
    t5 = make_tiny_family("t5", root / "t5")
    vit = make_tiny_family("vit", root / "vit")
    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBTUNE_HOME", str(root / "home"))
        runs["token"] = _train_in_process(_config(root, bert, "token-classification", tokens))
        runs["token-weak"] = _train_in_process(_config(root, bert, "token-classification",
                                                       tokens, max_steps=1))
        runs["qa"] = _train_in_process(_config(
            root, bert, "question-answering", qa, {"max_length": 16, "doc_stride": 4}))
        runs["mlm"] = _train_in_process(_config(root, bert, "masked-lm", texts, epochs=1))
        runs["clm"] = _train_in_process(_config(root, gpt2, "causal-lm", texts, epochs=1))
        runs["s2s"] = _train_in_process(_config(root, t5, "seq2seq", pairs,
                                                {"max_target_length": 8}, epochs=1))
        runs["image"] = _train_in_process(_config(root, vit, "image-classification", digits,
                                                  epochs=1))
    return root / "home", runs, {"tokens": tokens, "qa": qa, "texts": texts, "s2s": pairs,
                                 "digits": digits}


@pytest.fixture
def runs(task_runs, hubtune_home):
    import shutil

    source, ids, files = task_runs
    shutil.copytree(source, hubtune_home)
    return ids, files


def _errors(run_id: int, *more: str) -> dict:
    out = hubtune("runs", "errors", str(run_id), "--json", *more)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_token_rows_rank_sentences_by_wrong_tags(runs):
    ids, files = runs
    store = RunStore()
    run = store.get_run(ids["token"])
    recorded = store.prediction_set(run.id)
    assert recorded.loss_kind == "tag_errors" and recorded.examples == recorded.stored == 20
    report = _errors(run.id, "--limit", "20")
    rows = [json.loads(line) for line in files["tokens"].read_text().splitlines()]
    errors = report["errors"]
    assert [e["loss"] for e in errors] == sorted((e["loss"] for e in errors), reverse=True)
    wrong_tags = words = 0
    for e in errors:
        source = rows[e["row"] - 1]  # the file's own row: its words and tags
        assert e["input"] == " ".join(source["tokens"]) and e["label"] == " ".join(source["tags"])
        predicted, label = e["predicted"].split(), e["label"].split()
        assert len(predicted) == len(label)
        assert e["loss"] == sum(p != g for p, g in zip(predicted, label, strict=True))
        assert 0 < e["confidence"] <= 1
        wrong_tags += e["loss"]
        words += len(label)
    # The rows add up to the run's token accuracy.
    assert 1 - wrong_tags / words == pytest.approx(run.summary["best_accuracy"])

    text = hubtune("runs", "errors", str(run.id), "--limit", "2")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"Run {run.id}: 2 highest-errors of 20 validation examples")
    assert lines[1].startswith(f"#{errors[0]['example']}  row {errors[0]['row']}  errors ")
    assert lines[2].split(None, 1) == ["input:", errors[0]["input"]]
    assert lines[3].split(None, 1) == ["label:", errors[0]["label"]]


def test_compare_examples_between_two_token_runs(runs):
    ids, _ = runs
    good, weak = ids["token"], ids["token-weak"]
    store = RunStore()
    first, second = store.example_results(good), store.example_results(weak)
    expected = {i for i in first if first[i].predicted != second[i].predicted}
    assert expected
    out = hubtune("runs", "compare", str(good), str(weak), "--examples", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["compared"] == 20 and {d["example"] for d in report["disagreements"]} == \
        expected
    for d in report["disagreements"]:
        right = [i for i in (good, weak) if d["predicted"][str(i)] == d["label"]]
        assert d["right"] == (right[0] if right else None)
    text = hubtune("runs", "compare", str(good), str(weak), "--examples")
    assert f"disagree on {len(expected)} of 20" in text.stdout
    assert f"  run {good}:" in text.stdout and f"  run {weak}:" in text.stdout


def test_question_rows_hold_each_answer_and_its_f1(runs):
    ids, files = runs
    store = RunStore()
    run = store.get_run(ids["qa"])
    recorded = store.prediction_set(run.id)
    # One row per question, not per window of context.
    assert recorded.loss_kind == "f1_gap" and recorded.examples == recorded.stored == 15
    report = _errors(run.id, "--limit", "15")
    rows = [json.loads(line) for line in files["qa"].read_text().splitlines()]
    f1 = 0.0
    for e in report["errors"]:
        source = rows[e["row"] - 1]
        assert e["input"] == f"{source['question']} ||| {source['context']}"
        assert e["label"] in source["answers"]["text"]
        assert e["predicted"] in source["context"]
        assert 0 <= e["loss"] <= 100 and e["confidence"] is None
        f1 += (100 - e["loss"]) / 100
    assert f1 / 15 == pytest.approx(run.summary["best_f1"])


@pytest.mark.parametrize("which", ["mlm", "clm"])
def test_language_model_rows_rank_texts_by_their_loss(runs, which):
    ids, _ = runs
    store = RunStore()
    run = store.get_run(ids[which])
    recorded = store.prediction_set(run.id)
    assert recorded.loss_kind == "token_loss" and recorded.examples == recorded.stored == 10
    report = _errors(run.id)
    errors = report["errors"]
    assert len(errors) == 10 and all(e["loss"] >= 0 for e in errors)
    assert [e["loss"] for e in errors] == sorted((e["loss"] for e in errors), reverse=True)
    if which == "clm":
        for e in errors:
            # The true continuation is the text after its first token; the guesses are
            # one per position.
            assert e["input"].endswith(e["label"]) and e["label"]
            assert len(e["predicted"].split()) == len(e["label"].split())
    else:
        for e in errors:
            # One guess per masked token, each masked token one of the text's words.
            assert len(e["predicted"].split()) == len(e["label"].split())
            assert set(e["label"].split()) <= set(e["input"].split())
        assert any(e["label"] for e in errors)


def _predict(run_id: int, data, out, *more: str) -> tuple[list[dict], str]:
    import csv

    result = hubtune("predict", str(run_id), "--file", str(data), "--out", str(out),
                     "--batch-size", "3", *more)
    assert result.returncode == 0, result.stderr
    with open(out, encoding="utf-8") as fh:
        return list(csv.DictReader(fh)), result.stdout


@pytest.mark.parametrize("which,data", [("token", "tokens"), ("qa", "qa"), ("s2s", "s2s")])
def test_predict_file_reproduces_the_kept_models_validation_answers(runs, tmp_path, which,
                                                                     data):
    """Predictions over the whole training file (the validation split is part of it) give
    each validation row what the run's evaluation gave it, in the file's row order."""
    ids, files = runs
    run_id = ids[which]
    written, stdout = _predict(run_id, files[data], tmp_path / "out.csv")
    source = files[data].read_text(encoding="utf-8").splitlines()
    assert len(written) == (len(source) - 1 if data == "s2s" else len(source))
    stored = _errors(run_id, "--limit", "100")["errors"]
    assert stored
    for e in stored:
        assert written[e["row"] - 1]["predicted"] == e["predicted"], e
    assert written[0]["predicted"] and "labelled rows" in stdout
    metric, value = stdout.splitlines()[-1].split()[:2]
    assert metric == {"token": "f1", "qa": "f1", "s2s": "chrf"}[which]
    assert 0 <= float(value) <= 100


def test_predict_file_over_an_image_folder(runs, tmp_path):
    ids, files = runs
    run_id = ids["image"]
    written, stdout = _predict(run_id, files["digits"], tmp_path / "images.csv")
    assert len(written) == 24 and set(written[0]) == {"path", "label", "predicted", "score",
                                                      "p_0", "p_1", "p_2"}
    by_path = {r["path"]: r for r in written}
    stored = _errors(run_id)["errors"]
    for e in stored:  # the validation images, as the run's evaluation predicted them
        assert by_path[e["input"]]["predicted"] == e["predicted"]
    accuracy = sum(r["predicted"] == r["label"] for r in written) / 24
    assert f"accuracy {accuracy:.4f} on 24 labelled rows" in stdout

    flat = tmp_path / "flat"
    flat.mkdir()
    for r in written[:4]:
        (flat / Path(r["path"]).name).write_bytes(Path(r["path"]).read_bytes())
    unlabelled, stdout = _predict(run_id, flat, tmp_path / "flat.csv")
    assert [Path(r["path"]).name for r in unlabelled] == sorted(
        Path(r["path"]).name for r in written[:4])
    assert "labelled rows" not in stdout
    listed = tmp_path / "listed.csv"  # a table of paths relative to it, with labels
    listed.write_text("path,label\n" + "".join(f"flat/{Path(r['path']).name},{r['label']}\n"
                                                for r in written[:4]), encoding="utf-8")
    from_table, stdout = _predict(run_id, listed, tmp_path / "listed-out.csv")
    assert [r["predicted"] for r in from_table] == [r["predicted"] for r in written[:4]]
    assert "on 4 labelled rows" in stdout
    (flat / "broken.png").write_bytes(b"not an image")
    bad = hubtune("predict", str(run_id), "--file", str(flat), "--out",
                  str(tmp_path / "bad.csv"))
    assert bad.returncode != 0 and "broken.png is not an image" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
