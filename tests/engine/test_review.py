"""What review reads about a run: per-example validation results of the kept model,
per-class scores with the confusion behind them, and ROUGE for seq2seq."""

from __future__ import annotations

import threading

import pytest
import torch

from engine.core.events import EvalFinished, ValidationPredicted
from engine.tasks.metrics import class_report, confusion_matrix
from engine.tasks.review_rows import LabelResultCollector
from engine.training.loop import train
from tests.support.tests_helpers import config_for

pytestmark = pytest.mark.slow


def _train(tmp_path, tiny_bert, sentiment_csv, **train_keys):
    import dataclasses

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, epochs=4)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train_keys))
    events = []
    outcome = train(cfg, events.append, threading.Event(), out_dir=tmp_path / "out")
    assert outcome.status == "completed", outcome.error
    return outcome, events


def test_the_kept_models_examples_are_recorded_and_match_its_metrics(tmp_path, tiny_bert,
                                                                      sentiment_csv):
    outcome, events = _train(tmp_path, tiny_bert, sentiment_csv)
    summary = outcome.summary
    recorded = [e for e in events if isinstance(e, ValidationPredicted)]
    evals = {e.step: e.metrics for e in events if isinstance(e, EvalFinished)}
    assert recorded and len(recorded) <= len(evals)
    # Each record is a new best; the last one is the evaluation whose weights are kept.
    kept = recorded[-1]
    assert kept.step == summary["best_step"] == summary["model_step"]
    assert kept.examples == len(kept.rows) == 40  # 160 rows, validation_split 0.25
    assert kept.loss_kind == "cross_entropy"
    assert sorted(r[0] for r in kept.rows) == list(range(40))  # every example, once
    losses = [r[4] for r in kept.rows]
    assert losses == sorted(losses, reverse=True)
    assert {r[1] for r in kept.rows} | {r[2] for r in kept.rows} <= {"negative", "positive"}
    right = sum(r[1] == r[2] for r in kept.rows)
    assert right / 40 == pytest.approx(summary["best_accuracy"])
    assert sum(losses) / 40 == pytest.approx(evals[kept.step]["val_loss"], rel=1e-4)
    for _, predicted, label, confidence, loss in kept.rows:
        assert 0.5 <= confidence <= 1
        # Cross-entropy of a wrong answer is at least log 2 in a two-class problem.
        assert (predicted != label) <= (loss >= 0.69)

    report = summary["class_report"]
    assert report["classes"] == 2 and report["confusion"] is not None
    cm = torch.tensor(report["confusion"])
    assert int(cm.sum()) == 40 and float(cm.diag().sum()) / 40 == summary["best_accuracy"]
    assert "confusion" not in summary  # the old full grid is gone from the summary


def test_without_restore_best_every_evaluation_replaces_the_rows(tmp_path, tiny_bert,
                                                                 sentiment_csv):
    outcome, events = _train(tmp_path, tiny_bert, sentiment_csv, restore_best=False)
    recorded = [e for e in events if isinstance(e, ValidationPredicted)]
    evals = [e for e in events if isinstance(e, EvalFinished)]
    assert [e.step for e in recorded] == [e.step for e in evals]
    assert recorded[-1].step == outcome.summary["steps"]


def test_rows_are_capped_to_the_highest_losses():
    kind = "single_label"
    collector = LabelResultCollector(kind)
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 0.5]])
    gold = torch.tensor([0, 0, 1, 1])
    collector.add([3, 2, 1, 0], logits, logits.argmax(-1), gold)
    rows = collector.results().rows(("a", "b"), limit=2)
    # Example 2 (confidently wrong) then 1 (wrong): the two highest losses.
    assert [r[0] for r in rows] == [2, 1]
    assert rows[0][1:3] == ("b", "a") and rows[1][1:3] == ("a", "b")
    assert rows[0][3] == pytest.approx(torch.softmax(torch.tensor([0.0, 2.0]), 0)[1].item())
    assert rows[0][4] == pytest.approx(-torch.log_softmax(torch.tensor([0.0, 2.0]), 0)[0].item())


def test_regression_and_multi_label_rows_read_as_values_and_label_sets():
    reg = LabelResultCollector("regression")
    reg.add([0, 1], torch.tensor([[1.5], [0.0]]), torch.tensor([1.5, 0.0]),
            torch.tensor([1.0, 2.0]))
    rows = reg.results().rows(())
    assert rows == [(1, "0", "2", None, pytest.approx(4.0)), (0, "1.5", "1", None,
                                                            pytest.approx(0.25))]
    multi = LabelResultCollector("multi_label")
    logits = torch.tensor([[3.0, -3.0, 3.0]])
    multi.add([0], logits, (logits > 0).long(), torch.tensor([[1.0, 1.0, 0.0]]))
    (row,) = multi.results().rows(("x", "y", "z"))
    assert row[1:3] == ("x, z", "x, y")


def test_class_report_keeps_a_small_grid_and_only_top_pairs_for_many_classes():
    gold = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    small = class_report(confusion_matrix(gold, pred, 3))
    assert small["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # class 1: precision 2/3, recall 1, F1 0.8
    by_class = {r[0]: r for r in small["per_class"]}
    assert by_class[1][1:] == pytest.approx([2 / 3, 1.0, 0.8, 2])
    assert by_class[2][1:] == pytest.approx([1.0, 0.5, 2 / 3, 2])
    assert sorted(small["confused_pairs"]) == [[0, 1, 1], [2, 0, 1]]

    n = 300
    gen = torch.Generator().manual_seed(0)
    gold = torch.randint(0, n, (5000,), generator=gen)
    pred = torch.where(torch.rand(5000, generator=gen) < 0.7, gold, (gold + 1) % n)
    pred[:50] = 7  # one pair is confused far more often than the rest
    gold[:50] = 3
    big = class_report(confusion_matrix(gold, pred, n))
    assert big["confusion"] is None and big["classes"] == n
    assert big["confused_pairs"][0] == [3, 7, 50 + int(((gold == 3) & (pred == 7))[50:].sum())]
    assert len(big["confused_pairs"]) == 20 and len(big["per_class"]) == 20
    f1s = [r[3] for r in big["per_class"]]
    assert f1s == sorted(f1s)  # the worst classes
    import json

    assert len(json.dumps(big)) < 5000


def test_rouge_matches_hand_computed_scores():
    from engine.tasks.rouge import corpus_rouge, lcs_length, rouge_tokens

    assert rouge_tokens("The cat, sat!") == ["the", "cat", "sat"]
    assert lcs_length("a b c d".split(), "a c b d".split()) == 3
    # hyp "the cat sat on the mat" / ref "the cat lay on the mat":
    # unigrams: 5 of 6 overlap -> P = R = 5/6 -> F1 = 5/6
    # bigrams: the-cat, on-the, the-mat of 5 -> 3/5
    # LCS: the cat on the mat = 5 -> 5/6
    one = corpus_rouge(["the cat sat on the mat"], ["the cat lay on the mat"])
    assert one == pytest.approx({"rouge1": 500 / 6, "rouge2": 60.0, "rougeL": 500 / 6})
    # hyp "a b" / ref "a b c d": unigram P 1, R 1/2 -> 2/3; bigram P 1, R 1/3 -> 1/2;
    # LCS 2 -> 2/3. Averaged with an empty hypothesis (all 0).
    two = corpus_rouge(["a b", ""], ["a b c d", "x"])
    assert two == pytest.approx({"rouge1": 100 / 3, "rouge2": 25.0, "rougeL": 100 / 3})
    # Clipped counts: "the the the" against "the cat": overlap 1 -> P 1/3, R 1/2 -> 0.4
    assert corpus_rouge(["the the the"], ["the cat"])["rouge1"] == pytest.approx(40.0)


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    from tests.support import task_data as td
    from tests.support.tiny_models import make_tiny_family

    root = tmp_path_factory.mktemp("review-models")
    return {"t5": make_tiny_family("t5", root / "t5"), "vit": make_tiny_family("vit", root / "vit"),
            "s2s": td.write_seq2seq_csv(root / "s2s.csv"),
            "digits": td.write_digits_folder(root / "digits", per_class=12, classes=range(3))}


def _run_task(tmp_path, model, task, data, epochs=2):
    from engine.core.config import RunConfig

    model_cfg = {"id": str(model)}
    if str(model).startswith("torchvision:"):
        model_cfg["weights"] = "none"
    cfg = RunConfig.from_dict({
        "model": model_cfg, "head": {"task": task},
        "data": {"train": str(data), "validation_split": 0.25, "max_length": 32},
        "train": {"epochs": epochs, "batch_size": 8, "learning_rate": 3e-3, "log_every": 1,
                  "seed": 0, "warmup_ratio": 0.0},
        "base_dir": str(tmp_path),
    })
    events = []
    outcome = train(cfg, events.append, threading.Event(), out_dir=tmp_path / "out")
    assert outcome.status == "completed", outcome.error
    return outcome, events


def test_seq2seq_reports_rouge_and_ranks_examples_by_their_chrf(tmp_path, family):
    import sacrebleu

    outcome, events = _run_task(tmp_path, family["t5"], "seq2seq", family["s2s"])
    evals = [e.metrics for e in events if isinstance(e, EvalFinished)]
    assert {"val_rouge1", "val_rouge2", "val_rougeL"} <= set(evals[-1])
    assert all(0 <= evals[-1][k] <= 100 for k in ("val_rouge1", "val_rouge2", "val_rougeL"))
    kept = [e for e in events if isinstance(e, ValidationPredicted)][-1]
    assert kept.loss_kind == "chrf_gap" and kept.rows
    for _, hyp, ref, confidence, loss in kept.rows:
        assert confidence is None
        assert loss == pytest.approx(100 - sacrebleu.sentence_chrf(hyp, [ref]).score)
    assert [r[4] for r in kept.rows] == sorted((r[4] for r in kept.rows), reverse=True)


def test_image_classification_records_its_examples(tmp_path, family):
    outcome, events = _run_task(tmp_path, family["vit"], "image-classification",
                                family["digits"], epochs=1)
    kept = [e for e in events if isinstance(e, ValidationPredicted)][-1]
    assert kept.examples == len(kept.rows) == 9
    assert {r[2] for r in kept.rows} <= {"0", "1", "2"}
    assert sum(r[1] == r[2] for r in kept.rows) / 9 == pytest.approx(
        outcome.summary["best_accuracy"])
