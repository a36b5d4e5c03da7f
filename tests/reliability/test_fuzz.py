"""Fuzzing: the config loader and the file readers raise hubtune's own error or nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.config import RunConfig, load_config
from engine.core.errors import HubtuneError

KEYS = st.sampled_from(["name", "model", "head", "freeze", "data", "train", "id", "task",
                        "policy", "n", "train", "epochs", "batch_size", "learning_rate",
                        "eval_every", "early_stopping", "lora", "custom", "patterns",
                        "encoding", "limit", "validation_split", "unknown"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True), st.text(max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_config_from_any_mapping(data):
    try:
        RunConfig.from_dict(data)
    except HubtuneError as exc:
        assert str(exc) and "\n" not in str(exc)


@FUZZ
@given(st.text(max_size=200))
def test_config_from_any_yaml_text(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path, ["train.epochs=1"])
        except HubtuneError as exc:
            assert str(exc)


@FUZZ
@given(st.binary(max_size=400), st.sampled_from([".csv", ".tsv", ".jsonl", ".parquet"]))
def test_file_readers_on_any_bytes(blob, suffix):
    from engine.data.file_rows import read_rows
    from engine.data.reader import preview_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(blob)
        for reader in (lambda: read_rows(path), lambda: preview_file(path)):
            try:
                reader()
            except HubtuneError as exc:
                assert str(exc)


@FUZZ
@given(st.binary(max_size=400), st.sampled_from([".conll", ".json", ".jsonl"]))
def test_task_readers_on_any_bytes(blob, suffix):
    """CoNLL tags and SQuAD files: the readers the token and QA heads use."""
    from engine.data.reader import preview_file
    from engine.tasks.qa import read_squad
    from engine.tasks.token import read_conll

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(blob)
        readers = [lambda: preview_file(path)]
        readers.append(lambda: read_conll(path) if suffix == ".conll" else read_squad(path))
        for reader in readers:
            try:
                reader()
            except HubtuneError as exc:
                assert str(exc)


SQUAD_KEYS = st.sampled_from(["data", "paragraphs", "qas", "context", "question", "answers",
                              "text", "answer_start", "id", "title"])
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 50), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(SQUAD_KEYS, inner, max_size=4)), max_leaves=15)


@FUZZ
@given(st.dictionaries(SQUAD_KEYS, JSON_VALUES, max_size=3))
def test_squad_reader_on_squad_shaped_json(doc):
    import json

    from engine.tasks.qa import read_squad

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "squad.json"
        path.write_text(json.dumps(doc))
        try:
            read_squad(path)
        except HubtuneError as exc:
            assert str(exc)
