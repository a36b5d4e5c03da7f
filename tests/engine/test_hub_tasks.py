"""hf: datasets for the heads beyond the sequence family, against a loopback hub serving
a small parquet repo per head: token classification (a ClassLabel tag sequence),
seq2seq (source/target columns, a `translation` column), masked and causal LM (a text
column). Each trains a few steps in process; each reports a missing column in one
sentence."""

from __future__ import annotations

import threading

import pytest

from engine.core.config import RunConfig
from engine.core.errors import DataError
from engine.core.events import EvalFinished, Note, RunPrepared
from tests.support.hub_datasets import TAGS, serve_repos, write_task_repos
from tests.support.hub_server import Repo

NER, COPY = "hf:hubtune-test/ner-data", "hf:hubtune-test/copy-data"
TRANSLATE, TEXT = "hf:hubtune-test/translate-data", "hf:hubtune-test/text-data"
IMAGES, SQUAD = "hf:hubtune-test/image-data", "hf:hubtune-test/squad-data"


@pytest.fixture(scope="module")
def task_repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("task-hub")
    return [Repo(repo, folder, repo_type="dataset")
            for repo, folder in write_task_repos(root).items()]


@pytest.fixture
def hub(task_repos, hf_cache, monkeypatch):
    with serve_repos(task_repos, monkeypatch) as server:
        yield server


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from tests.support.tiny_models import make_tiny_family

    root = tmp_path_factory.mktemp("hub-task-models")
    return {f: make_tiny_family(f, root / f) for f in ("t5", "gpt2")}


def config(model, task: str, tmp_path=None, **data) -> RunConfig:
    return RunConfig.from_dict({
        "model": {"id": str(model)}, "head": {"task": task},
        "data": {"max_length": 32, "validation_split": 0.25, **data},
        "train": {"max_steps": 4, "batch_size": 8, "learning_rate": 3e-3, "log_every": 1,
                  "eval_every": 4, "seed": 0, "warmup_ratio": 0.0},
        **({"base_dir": str(tmp_path)} if tmp_path else {})})


def load(cfg: RunConfig):
    from engine.tasks import task_for

    task = task_for(cfg.head.task)
    processor, _ = task.load_processor(cfg)
    return task.load_data(cfg, processor)


def train_events(cfg: RunConfig, tmp_path) -> list:
    from engine.training.loop import train

    events = []
    outcome = train(cfg, events.append, threading.Event(), out_dir=tmp_path / "out")
    assert outcome.status == "completed", outcome.error
    return events


def notes(events) -> str:
    return "\n".join(e.message for e in events if isinstance(e, Note))


def test_token_classification_trains_on_a_class_label_tag_sequence(hub, tiny_bert, tmp_path):
    cfg = config(tiny_bert, "token-classification", tmp_path, train=NER)
    events = train_events(cfg, tmp_path)
    prepared = next(e for e in events if isinstance(e, RunPrepared))
    assert prepared.labels == TAGS  # the ClassLabel's order, not sorted tag names
    assert (prepared.train_samples, prepared.validation_samples) == (64, 16)
    said = notes(events)
    assert "has no column 'text'; reading 'tokens'" in said
    assert "has no column 'label'; reading 'ner_tags'" in said
    assert "1 row of hf:hubtune-test/ner-data (split train) has no words; it is left out." \
        in said
    assert "val_f1" in next(e for e in events if isinstance(e, EvalFinished)).metrics
    data = load(cfg)  # the ids stay Arrow columns, and labels align to first sub-tokens
    assert type(data.train.fields["input_ids"]).__name__ == "ArrowColumn"
    ids, labels = data.train.fields["input_ids"][0], data.train.fields["labels"][0]
    assert len(ids) == len(labels) == data.train.lengths[0]
    assert labels[0] == labels[-1] == -100 and set(labels[1:-1]) <= set(range(len(TAGS)))
    import pickle  # the data cache and data worker processes get the examples pickled

    again = pickle.loads(pickle.dumps(data.train))
    assert again.fields["labels"][5] == data.train.fields["labels"][5]


def test_seq2seq_trains_on_a_translation_column_in_a_language_pair_subset(hub, models,
                                                                          tmp_path):
    cfg = config(models["t5"], "seq2seq", tmp_path, train=TRANSLATE, subset="de-en",
                 max_target_length=8)
    events = train_events(cfg, tmp_path)
    said = notes(events)
    assert "Translating de to en from the column 'translation'" in said
    assert "Validating on the validation split of hf:hubtune-test/translate-data (12 rows)" \
        in said
    metrics = [e.metrics for e in events if isinstance(e, EvalFinished)][-1]
    assert {"val_bleu", "val_chrf", "val_rouge1"} <= set(metrics)
    data = load(cfg)
    assert data.extra["references"][0].count(" ") == 1  # 'noun adjective', the en side


def test_seq2seq_reads_conventional_columns_and_leaves_out_rows_without_a_target(
        hub, models):
    data = load(config(models["t5"], "seq2seq", train=COPY))
    said = "\n".join(data.extra["notes"])
    assert "reading 'document'" in said and "reading 'summary'" in said
    assert data.warnings == ("1 row of hf:hubtune-test/copy-data (split train) has no "
                             "target in 'summary'; it is left out.",)
    assert len(data.train) + len(data.validation) == 47
    assert data.extra["references"] and len(data.extra["references"]) == len(data.validation)


@pytest.mark.parametrize("task", ["masked-lm", "causal-lm"])
def test_language_models_train_on_a_text_column(hub, tiny_bert, models, tmp_path, task):
    model = tiny_bert if task == "masked-lm" else models["gpt2"]
    events = train_events(config(model, task, tmp_path, train=TEXT), tmp_path)
    prepared = next(e for e in events if isinstance(e, RunPrepared))
    assert prepared.train_samples + prepared.validation_samples == 46  # blank rows left out
    assert "has no column 'text'; reading 'content'" in notes(events)
    assert "val_perplexity" in next(e for e in events if isinstance(e, EvalFinished)).metrics


def test_streaming_reads_the_rows_the_steps_take_for_a_language_model(hub, models):
    data = load(config(models["gpt2"], "causal-lm", train=TEXT, streaming=True))
    # 4 steps x 8 rows streamed; blank rows are left out, a quarter validates.
    assert len(data.train) + len(data.validation) == 30
    assert "streaming the first 32 rows" in data.extra["notes"][0]


def test_image_classification_reads_an_image_feature_and_skips_a_bad_image(
        hub, tiny_vit, tmp_path):
    cfg = config(tiny_vit, "image-classification", tmp_path, train=IMAGES, bad_files="skip")
    events = train_events(cfg, tmp_path)
    prepared = next(e for e in events if isinstance(e, RunPrepared))
    assert prepared.labels == ("dark", "light")  # the ClassLabel's names
    assert (prepared.train_samples, prepared.validation_samples) == (29, 10)
    said = notes(events)
    assert "has no column 'text'; reading 'image'" in said
    assert "Left out 1 unreadable files" in said
    assert "val_accuracy" in next(e for e in events if isinstance(e, EvalFinished)).metrics
    with pytest.raises(DataError) as err:
        load(config(tiny_vit, "image-classification", train=IMAGES))
    assert str(err.value) == ("hf:hubtune-test/image-data (split train) row 3 holds no image "
                              "hubtune can read in 'image'; fix that row, or set "
                              "data.bad_files: skip to leave such rows out.")


def test_question_answering_reads_squad_shaped_answers(hub, tiny_bert, tmp_path):
    cfg = config(tiny_bert, "question-answering", tmp_path, train=SQUAD, doc_stride=8)
    events = train_events(cfg, tmp_path)
    metrics = [e.metrics for e in events if isinstance(e, EvalFinished)][-1]
    assert {"val_exact_match", "val_f1"} <= set(metrics)
    data = load(cfg)
    assert len(data.extra["contexts"]) == len(data.extra["answers"]) == 12
    context, answer = data.extra["contexts"][0], data.extra["answers"][0][0]
    assert answer in context.split()  # the noun the question asks for
    window = data.train.fields
    start, end = window["start_positions"][0], window["end_positions"][0]
    assert 0 < start <= end < data.train.lengths[0]  # the answer's tokens, in the window


def test_a_missing_column_is_one_sentence_for_every_head(hub, tiny_bert, tiny_vit, models):
    cases = [
        (config(tiny_bert, "token-classification", train=NER, label_column="tags"),
         "hf:hubtune-test/ner-data (split train) has no column 'tags' (data.label_column); "
         "its columns are id, tokens, ner_tags. Set data.label_column to the right one."),
        (config(tiny_bert, "token-classification", train=NER, text_column="id"),
         "hf:hubtune-test/ner-data (split train) holds string values, not lists of words, in "
         "its column 'id' (data.text_column); set data.text_column to the column with a list "
         "of words per row."),
        (config(models["t5"], "seq2seq", train=COPY, text_column="body"),
         "hf:hubtune-test/copy-data (split train) has no column 'body' (data.text_column); "
         "its columns are document, summary. Set data.text_column to the right one."),
        (config(models["t5"], "seq2seq", train=TRANSLATE, subset="de-en", text_column="fr"),
         "hf:hubtune-test/translate-data (subset de-en, split train) holds translations into "
         "de, en in its column 'translation'; set data.text_column to the source language "
         "and data.label_column to the target (e.g. de and en)."),
        (config(models["gpt2"], "causal-lm", train=TEXT, text_column="body"),
         "hf:hubtune-test/text-data (split train) has no column 'body' (data.text_column); "
         "its columns are content, n. Set data.text_column to the right one."),
        (config(tiny_vit, "image-classification", train=IMAGES, label_column="class"),
         "hf:hubtune-test/image-data (split train) has no column 'class' "
         "(data.label_column); its columns are image, label. Set data.label_column to the "
         "right one."),
        (config(tiny_bert, "question-answering", train=SQUAD, validation=f"{TEXT}:train",
                doc_stride=8),
         "hf:hubtune-test/text-data (split train) has no column 'question'; question "
         "answering needs question, context and answers (its columns are content, n)."),
    ]
    for cfg, message in cases:
        with pytest.raises(DataError) as err:
            load(cfg)
        assert str(err.value) == message


@pytest.mark.parametrize(("task", "data", "model"), [
    ("token-classification", NER, None), ("seq2seq", TRANSLATE, "t5"),
    ("causal-lm", TEXT, "gpt2"), ("question-answering", SQUAD, None)])
def test_the_data_cache_gives_back_what_a_fresh_read_gives(hub, tiny_bert, models, task,
                                                           data, model):
    """Hub examples held as Arrow columns come back from the cache's Arrow entry row for
    row, with their labels, notes and the dataset's record."""
    import json

    from engine.tasks import task_for
    from engine.training.data_cache import load_cached

    extra = {TRANSLATE: {"subset": "de-en"}, SQUAD: {"doc_stride": 8}}.get(data, {})
    cfg = config(models[model] if model else tiny_bert, task, train=data, **extra)
    task_ = task_for(task)
    processor, _ = task_.load_processor(cfg)
    fresh, hit = load_cached(task_, cfg, processor, lambda: task_.load_data(cfg, processor))
    assert not hit
    again, hit = load_cached(task_, cfg, processor, lambda: task_.load_data(cfg, processor))
    assert hit
    for split in ("train", "validation"):
        a, b = getattr(fresh, split), getattr(again, split)
        assert list(b.lengths) == list(a.lengths) and list(b.fields) == list(a.fields)
        for name in a.fields:
            assert [list(b.fields[name][i]) if isinstance(a.fields[name][i], list)
                    else b.fields[name][i] for i in range(len(a))] == \
                   [a.fields[name][i] for i in range(len(a))], (split, name)
    assert again.labels == fresh.labels and again.warnings == fresh.warnings
    assert json.dumps(again.extra, sort_keys=True) == json.dumps(fresh.extra, sort_keys=True)
