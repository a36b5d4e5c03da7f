"""Real fine-tunes of tiny models for every head, end to end through `train`."""

from __future__ import annotations

import threading

import pytest

from engine.core.config import RunConfig
from engine.core.events import EvalFinished, RunPrepared
from engine.training.loop import train
from tests.support.tiny_models import WORDS


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from tests.support import task_data as td

    root = tmp_path_factory.mktemp("train-data")
    return {
        "token-classification": td.write_token_jsonl(root / "ner.jsonl", rows=120),
        "conll": td.write_conll(root / "ner.conll"),
        "question-answering": td.write_qa_jsonl(root / "qa.jsonl"),
        "squad": td.write_squad_json(root / "squad.json"),
        "masked-lm": td.write_text_csv(root / "text.csv"),
        "seq2seq": td.write_seq2seq_csv(root / "s2s.csv"),
        "multi-label-classification": td.write_multilabel_csv(root / "multi.csv", rows=120),
        "image-classification": td.write_digits_folder(root / "digits", per_class=20,
                                                       classes=range(4)),
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tests.support.tiny_models import make_tiny_family

    root = tmp_path_factory.mktemp("train-models")
    return {f: make_tiny_family(f, root / f) for f in ("bert", "gpt2", "t5", "vit")}


def run(tmp_path, model, task, data, *, epochs=2, lr=3e-3, **data_keys):
    model_cfg = {"id": str(model)}
    if str(model).startswith("torchvision:"):
        model_cfg["weights"] = "none"
    cfg = RunConfig.from_dict({
        "model": model_cfg, "head": {"task": task},
        "data": {"train": str(data), "validation_split": 0.25, "max_length": 32,
                 "doc_stride": 8, **data_keys},
        "train": {"epochs": epochs, "batch_size": 8, "learning_rate": lr, "log_every": 1,
                  "seed": 0, "warmup_ratio": 0.0},
        "base_dir": str(tmp_path),
    })
    events = []
    outcome = train(cfg, events.append, threading.Event(), out_dir=tmp_path / "out")
    assert outcome.status == "completed", outcome.error
    evals = [e.metrics for e in events if isinstance(e, EvalFinished)]
    prepared = next(e for e in events if isinstance(e, RunPrepared))
    return outcome, evals, prepared


def test_token_classification_learns_word_tags(tmp_path, models, files):
    outcome, evals, prepared = run(tmp_path, models["bert"], "token-classification",
                                   files["token-classification"], epochs=6)
    assert set(prepared.labels) == {"O", "B-THING", "B-POS", "B-NEG"}
    assert evals[-1]["val_f1"] > evals[0]["val_f1"]
    assert outcome.summary["final_f1"] >= 0.8
    assert outcome.summary["watched_metric"] == "f1"
    from transformers import AutoModelForTokenClassification

    reloaded = AutoModelForTokenClassification.from_pretrained(tmp_path / "out" / "model")
    assert set(reloaded.config.id2label.values()) == set(prepared.labels)
    tagged = predictor(tmp_path).predict(["the movie was good"])[0]
    assert tagged.label == "the/O movie/B-THING was/O good/B-POS"


def test_token_classification_from_conll(tmp_path, models, files):
    outcome, _, prepared = run(tmp_path, models["bert"], "token-classification",
                               files["conll"], epochs=1)
    assert set(prepared.labels) == {"O", "B-THING"}
    assert 0.0 <= outcome.summary["final_f1"] <= 1.0


@pytest.mark.parametrize("source", ["question-answering", "squad"])
def test_question_answering_runs_and_scores_spans(tmp_path, models, files, source):
    outcome, evals, _ = run(tmp_path, models["bert"], "question-answering", files[source])
    for key in ("val_exact_match", "val_f1", "val_loss"):
        assert key in evals[-1]
    assert 0.0 <= outcome.summary["final_exact_match"] <= outcome.summary["final_f1"] <= 1.0
    context = "the movie was good . the food was bad ."
    answer = predictor(tmp_path).predict([f"what was good ? ||| {context}"])[0]
    assert answer.label and answer.label in context


def test_masked_lm_lowers_perplexity(tmp_path, models, files):
    _, evals, _ = run(tmp_path, models["bert"], "masked-lm", files["masked-lm"], epochs=4)
    assert evals[-1]["val_perplexity"] < evals[0]["val_perplexity"]
    fill = predictor(tmp_path).predict(["the movie was [MASK]"])[0]
    assert len(fill.scores) == 5 and fill.label in fill.scores


def test_causal_lm_lowers_perplexity(tmp_path, models, files):
    _, evals, _ = run(tmp_path, models["gpt2"], "causal-lm", files["masked-lm"], epochs=4)
    assert evals[-1]["val_perplexity"] < evals[0]["val_perplexity"]
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model") is not None
    more = predictor(tmp_path).predict(["the movie"])[0]
    assert more.label and set(more.label.split()) <= set(WORDS)


def test_seq2seq_scores_bleu_and_chrf(tmp_path, models, files):
    outcome, evals, _ = run(tmp_path, models["t5"], "seq2seq", files["seq2seq"], epochs=6)
    assert {"val_bleu", "val_chrf", "val_loss"} <= set(evals[-1])
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert evals[-1]["val_chrf"] > 0  # it copies some of the right words by now
    out = predictor(tmp_path).predict(["the food was good"])[0]
    assert isinstance(out.label, str) and set(out.label.split()) <= set(WORDS)


def test_multi_label_classification(tmp_path, tiny_bert, files):
    outcome, evals, prepared = run(tmp_path, tiny_bert, "multi-label-classification",
                                   files["multi-label-classification"], epochs=12)
    assert set(prepared.labels) == {"negative", "positive", "venue"}
    assert {"val_accuracy", "val_micro_f1", "val_macro_f1"} <= set(evals[-1])
    assert outcome.summary["final_micro_f1"] > 0.6
    labelled = predictor(tmp_path).predict(["the food was good"])[0]
    assert set(labelled.scores) == {"negative", "positive", "venue"}


def test_image_classification_on_digits(tmp_path, models, files):
    outcome, evals, prepared = run(tmp_path, models["vit"], "image-classification",
                                   files["image-classification"], epochs=6, lr=2e-3)
    assert prepared.labels == ("0", "1", "2", "3")
    assert outcome.summary["final_accuracy"] > outcome.summary["baseline_majority_accuracy"]
    from transformers import AutoModelForImageClassification

    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path / "out" / "model")
    assert reloaded.config.num_labels == 4
    image = next((files["image-classification"] / "2").iterdir())
    guess = predictor(tmp_path).predict([str(image)])[0]
    assert guess.label in prepared.labels and abs(sum(guess.scores.values()) - 1) < 1e-4


def test_torchvision_backbone_trains_and_predicts(tmp_path, files):
    outcome, _, prepared = run(tmp_path, "torchvision:resnet18", "image-classification",
                               files["image-classification"], epochs=1, lr=1e-3,
                               image_size=32)
    image = next((files["image-classification"] / "1").iterdir())
    assert predictor(tmp_path).predict([str(image)])[0].label in prepared.labels


def predictor(tmp_path):
    from engine.trained.predict import Predictor

    return Predictor(tmp_path / "out" / "model")


def test_feature_extraction_embeds_the_data_with_the_checkpoint_pooling(tmp_path, tiny_bert,
                                                                         files):
    from safetensors.torch import load_file

    cfg = RunConfig.from_dict({
        "model": {"id": str(tiny_bert)}, "head": {"task": "feature-extraction",
                                                  "pooling": "mean"},
        "data": {"train": str(files["masked-lm"]), "max_length": 32},
        "base_dir": str(tmp_path)})
    outcome = train(cfg, lambda e: None, threading.Event(), out_dir=tmp_path / "out")
    assert outcome.status == "completed"
    vectors = load_file(tmp_path / "out" / "embeddings.safetensors")["embeddings"]
    assert vectors.shape == (60, 32) == (outcome.summary["examples"],
                                         outcome.summary["dimension"])
    # The saved model gives the same vector for the same text.
    import csv

    first = next(csv.DictReader(open(files["masked-lm"])))["text"]
    again = predictor(tmp_path).predict([first])[0]
    assert again.score == pytest.approx(float(vectors[0].norm()), rel=1e-4)
