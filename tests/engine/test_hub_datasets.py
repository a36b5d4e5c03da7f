"""hf: datasets against the loopback hub: resolve, download one subset, read it as Arrow,
map columns and labels, validate, work offline from the cache, and explain failures."""

from __future__ import annotations

import huggingface_hub.constants as hf_constants
import pytest

from engine.core.config import RunConfig
from engine.core.errors import ConfigError, DataError, HubtuneError
from engine.data.hub.fetch import DEFAULT_SUBSET, read_layout

SENTIMENT = "hubtune-test/sentiment"


def config(tiny_bert, task: str = "text-classification", **data) -> RunConfig:
    return RunConfig.from_dict({"model": {"id": str(tiny_bert)}, "head": {"task": task},
                                "data": {"max_length": 32, **data}})


def load(cfg: RunConfig):
    from engine.tasks import task_for

    task = task_for(cfg.head.task)
    tokenizer, _ = task.load_processor(cfg)
    return task.load_data(cfg, tokenizer)


def fetched(hub) -> set[str]:
    return {path.split("/resolve/", 1)[1].split("/", 1)[1]
            for method, path in hub.requests if method == "GET" and "/resolve/" in path}


def go_offline(monkeypatch) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_layout_comes_from_the_readme_configs_or_the_file_names():
    readme = ("---\nconfigs:\n- config_name: a\n  data_files:\n  - split: train\n    path: a/tr-*\n"
              "- config_name: b\n  default: true\n  data_files: b/*.csv\n---\n")
    layout = read_layout(readme, ["a/tr-0.parquet", "b/x.csv"])
    assert layout.subsets == {"a": {"train": ("a/tr-*",)}, "b": {"train": ("b/*.csv",)}}
    assert layout.default == "b"
    files = ["README.md", "data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet",
             "data/validation-00000-of-00001.parquet", "en/test/0000.parquet", "en/train.csv"]
    layout = read_layout(None, files)
    assert layout.subsets == {
        DEFAULT_SUBSET: {"train": tuple(files[1:3]), "validation": (files[3],)},
        "en": {"test": ("en/test/0000.parquet",), "train": ("en/train.csv",)}}
    assert layout.default == DEFAULT_SUBSET
    assert read_layout(None, ["rows.jsonl"]).subsets == {DEFAULT_SUBSET: {"train": ("rows.jsonl",)}}


def test_a_subset_trains_from_arrow_with_class_label_names_and_its_validation_split(
        hub_server, tiny_bert):
    data = load(config(tiny_bert, train=f"hf:{SENTIMENT}"))
    assert data.labels == ("neg", "pos")  # the ClassLabel's names, not 0 and 1
    assert (len(data.train), len(data.validation)) == (96, 32)
    assert type(data.train).__name__ == "ArrowSequenceExamples"  # ids stay in Arrow, not lists
    assert data.train.input_ids[0][0] == 2 and len(data.train.input_ids[0]) == data.train.lengths[0]
    record = data.extra["dataset"]
    assert record["id"] == f"hf:{SENTIMENT}" and record["subset"] == "reviews"
    assert record["sha"] == hub_server.datasets[SENTIMENT].sha
    assert record["validation"] == f"hf:{SENTIMENT}:validation"
    assert any("Validating on the validation split" in n for n in data.extra["notes"])
    # Only the default subset's files came down, not the other subset's.
    assert fetched(hub_server) == {"README.md", "reviews/train-00000-of-00002.parquet",
                                   "reviews/train-00001-of-00002.parquet",
                                   "reviews/validation-00000-of-00001.parquet"}
    from engine.data.loading import SequenceCollator

    batch = SequenceCollator(data.train, 0, False)([0, 1])
    assert batch["labels"].tolist() == data.train.labels[:2]


def test_another_subset_maps_columns_like_files_and_splits_off_validation(hub_server,
                                                                         tiny_bert):
    cfg = config(tiny_bert, "regression", train=f"hf:{SENTIMENT}", subset="short",
                 label_column="score", validation_split=0.25)
    data = load(cfg)
    assert (len(data.train), len(data.validation)) == (30, 10)
    assert data.labels == () and isinstance(data.train.labels[0], float)
    notes = " ".join(data.extra["notes"])
    assert "has no column 'text'; reading 'sentence'" in notes  # the default name fell back
    assert "split off" in notes and data.extra["dataset"]["subset"] == "short"
    # An explicit column is never second-guessed.
    with pytest.raises(DataError) as err:
        load(config(tiny_bert, train=f"hf:{SENTIMENT}", subset="short", text_column="body"))
    assert str(err.value) == (f"hf:{SENTIMENT} (subset short, split train) has no column "
                              "'body' (data.text_column); its columns are sentence, score. "
                              "Set data.text_column to the right one.")


def test_string_labels_and_data_limit_read_a_seeded_sample(hub_server, tiny_bert):
    cfg = config(tiny_bert, train="hf:hubtune-test/plain-data", limit=20,
                 validation_split=0.2)
    first, second = load(cfg), load(cfg)
    assert first.labels == ("neg", "pos") and len(first.train) + len(first.validation) == 20
    assert first.train.labels == second.train.labels  # seeded
    assert [first.train.input_ids[i] for i in range(3)] == \
        [second.train.input_ids[i] for i in range(3)]


def test_missing_subset_split_and_column_are_one_sentence_listing_what_exists(hub_server,
                                                                             tiny_bert):
    cases = [
        ({"train": f"hf:{SENTIMENT}", "subset": "long"},
         f"hf:{SENTIMENT} has no subset 'long'; its subsets are reviews, short. Set "
         "data.subset to one of them."),
        ({"train": f"hf:{SENTIMENT}:test"},
         f"hf:{SENTIMENT} (subset reviews) has no split 'test'; its splits are train, "
         f"validation. Name one after the dataset id (hf:{SENTIMENT}:train) or in "
         "data.validation."),
        ({"train": f"hf:{SENTIMENT}", "label_column": "stars"},
         f"hf:{SENTIMENT} (subset reviews, split train) has no column 'stars' "
         "(data.label_column); its columns are text, label. Set data.label_column to the "
         "right one."),
    ]
    for data, message in cases:
        with pytest.raises(DataError) as err:
            load(config(tiny_bert, **data))
        assert str(err.value) == message


def test_offline_a_cached_dataset_loads_and_an_uncached_one_is_one_sentence(
        hub_server, tiny_bert, monkeypatch):
    cfg = config(tiny_bert, train=f"hf:{SENTIMENT}")
    online = load(cfg)
    go_offline(monkeypatch)
    served = len(hub_server.requests)
    offline = load(cfg)
    assert len(hub_server.requests) == served  # nothing asked of the hub
    assert offline.extra["dataset"]["sha"] == online.extra["dataset"]["sha"]
    assert offline.train.labels == online.train.labels
    with pytest.raises(HubtuneError) as err:
        load(config(tiny_bert, train="hf:hubtune-test/plain-data"))
    assert str(err.value) == ("Dataset hf:hubtune-test/plain-data is not (wholly) in the local "
                              "cache and hubtune is offline (HF_HUB_OFFLINE=1); unset "
                              "HF_HUB_OFFLINE once to download it.")
    # A subset never downloaded is refused, not read short.
    with pytest.raises(HubtuneError, match="not \\(wholly\\) in the local cache"):
        load(config(tiny_bert, "regression", train=f"hf:{SENTIMENT}", subset="short",
                    label_column="score"))


def test_a_gated_dataset_names_the_page_where_access_is_requested(hub_server, tiny_bert,
                                                                   monkeypatch):
    cfg = config(tiny_bert, train="hf:hubtune-test/gated-data")
    page = f"{hub_server.url}/datasets/hubtune-test/gated-data"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hf_constants, "HF_TOKEN_PATH", "/nonexistent/token")
    with pytest.raises(HubtuneError) as err:
        load(cfg)
    assert str(err.value) == (f"Dataset hf:hubtune-test/gated-data is gated or private "
                              f"(HTTP 401): request access at {page}, then log in with "
                              "`hf auth login` or set HF_TOKEN.")
    monkeypatch.setenv("HF_TOKEN", "hf_someone_elses_token")
    with pytest.raises(HubtuneError, match=r"\(HTTP 403\): request access at "):
        load(cfg)
    monkeypatch.setenv("HF_TOKEN", "hf_granted_token_for_tests")
    assert load(cfg).labels == ("neg", "pos")


def test_hf_data_in_the_config():
    base = {"model": {"id": "m"}}
    cfg = RunConfig.from_dict({**base, "data": {"train": "hf:glue:validation", "subset": "sst2"}})
    assert cfg.data.subset == "sst2" and cfg.data.revision == "main"
    with pytest.raises(ConfigError, match="is not a hub dataset reference"):
        RunConfig.from_dict({**base, "data": {"train": "hf:a/b/c"}})
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({**base, "data": {"train": "hf:a/b", "streaming": True}})
    assert str(err.value) == ("data.streaming: true needs train.max_steps (a stream has no "
                              "length to count epochs in); set train.max_steps, e.g. 1000.")
    for task in ("seq2seq", "token-classification", "question-answering",
                 "image-classification", "causal-lm"):  # every head takes hub data
        assert RunConfig.from_dict({**base, "head": {"task": task},
                                    "data": {"train": "hf:a/b"}}).head.task == task


def test_streaming_reads_only_the_rows_the_steps_take(hub_server, tiny_bert):
    cfg = RunConfig.from_dict({
        "model": {"id": str(tiny_bert)},
        "data": {"train": f"hf:{SENTIMENT}", "streaming": True, "max_length": 32},
        "train": {"max_steps": 2, "batch_size": 8}})
    data = load(cfg)
    assert len(data.train) == 16 and len(data.validation) == 32
    assert data.labels == ("neg", "pos")
    assert "streaming the first 16 rows" in data.extra["notes"][0]
    # One of the two training files is read (a seeded pick); the other never comes down.
    trains = {f for f in fetched(hub_server) if "/train-" in f}
    assert len(trains) == 1
    again = load(cfg)  # a re-run reads the streamed rows back from the cache
    assert again.train.labels == data.train.labels


def test_tokenised_hub_data_is_kept_in_the_data_cache_keyed_by_commit(hub_server, tiny_bert,
                                                                      monkeypatch):
    from engine.tasks import task_for
    from engine.training.data_cache import load_cached

    cfg = config(tiny_bert, train=f"hf:{SENTIMENT}")
    task = task_for(cfg.head.task)
    tokenizer, _ = task.load_processor(cfg)
    first, hit = load_cached(task, cfg, tokenizer, lambda: task.load_data(cfg, tokenizer))
    assert not hit
    go_offline(monkeypatch)  # the key is the commit the cache's refs name
    again, hit = load_cached(task, cfg, tokenizer, lambda: task.load_data(cfg, tokenizer))
    assert hit and again.extra["dataset"]["sha"] == first.extra["dataset"]["sha"]
    assert again.train.input_ids[5] == first.train.input_ids[5]  # unpickled Arrow rows
    other = config(tiny_bert, train=f"hf:{SENTIMENT}", revision="0" * 40)
    assert load_cached(task, other, tokenizer, lambda: "rebuilt") == ("rebuilt", False)
