"""Round 3 of hardening, the inputs (#29, classes 3, 5, 6 and 9): untrusted configs, cells,
knobs and ids cannot exhaust the machine; data reads the same from a file and the hub;
review shows only what a run saw; `--force` never replaces an input and outputs follow
the umask. From the engine API and the CLI; runs train in this process (`run_worker`)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest
import yaml

from engine.core.config import ConfigError, RunConfig, apply_overrides, load_config
from engine.core.errors import DataError, HubtuneError
from store import RunStore, StoreError
from tests.support.cli_runner import hubtune
from tests.support.tests_helpers import config_for, train_in_process


def one_sentence(result) -> str:
    """The error a command printed: one line on stderr, its last, no traceback (a progress
    line such as predict's device may come before it)."""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


class Spy:
    """A real tokenizer that records the longest text each call handed it."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.longest = tokenizer, 0

    def __call__(self, first=None, second=None, **kwargs):
        for texts in (first, second, kwargs.get("text_target")):
            for t in texts if isinstance(texts, list) else [texts] if texts else []:
                size = len(t) if isinstance(t, str) else sum(len(w) for w in t)
                self.longest = max(self.longest, size)
        return self.tokenizer(first, second, **kwargs)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def _tokenizer(model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


# -- class 3: nothing untrusted exhausts the machine ----------------------------------


DEEP = "model: {id: x}\ndata: {train: t.csv}\ntrain: {epochs: " + "[" * 20_000 + "]" * 20_000 \
    + "}\n"
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}' if i > 1 else '*a'] * 10)}]\n" for i in range(1, 10)
) + "model: {id: x}\ndata: {train: t.csv}\nfreeze: {policy: modules, patterns: *a9}\n"
"""Ten values, each level ten aliases of the one below: 10^10 values once expanded."""


@pytest.mark.parametrize(("text", "message"), [
    (DEEP, "nests more than 64 levels deep"),
    (BOMB, "expands to more than 100,000 values through its aliases"),
    ("a: &a [*a]\nmodel: {id: x}\n", "holds an alias (*name) inside the value it names"),
])
def test_a_hostile_config_is_refused_in_bounded_time(tmp_path, text, message):
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="^Config file .*" + message.replace("(", r"\(")
                       .replace(")", r"\)").replace("*", r"\*")):
        load_config(path)
    assert time.monotonic() - started < 10
    result = hubtune("plan", str(path))
    assert result.returncode != 0 and message in one_sentence(result)


def test_a_config_far_larger_than_any_config_is_refused_before_reading(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("# " + "x" * (2 << 20) + "\nmodel: {id: x}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="a run config is a short YAML file"):
        load_config(path)


def test_set_values_and_keys_nested_thousands_deep_are_one_sentence(tmp_path, tiny_config):
    deep_value = "train.epochs=" + "[" * 50_000 + "]" * 50_000
    deep_key = "." .join(["train"] * 5_000) + "=1"
    bomb = "freeze.patterns=" + yaml.safe_dump(yaml.safe_load(BOMB)["a"])  # plain: accepted
    assert apply_overrides({}, [bomb])["freeze"]["patterns"] == ["x"] * 10
    for override, message in ((deep_value, "nests more than 64 levels deep"),
                              (deep_key, "has 5,000 dotted parts; config keys have at most")):
        with pytest.raises(ConfigError, match=message):
            load_config(tiny_config, [override])
        result = hubtune("plan", str(tiny_config), "--set", override)
        assert result.returncode != 0 and message in one_sentence(result)
    # an ordinary anchor and alias still work
    ok = tmp_path / "ok.yaml"
    ok.write_text("model: {id: x}\ndata: {train: t.csv}\n"
                  "train: {eval_every: &n 7, log_every: *n}\n", encoding="utf-8")
    assert load_config(ok).train.log_every == 7


HUGE = 8_000_000
"""Characters of the one huge cell: far past any max_length, cheap enough for a test."""


def test_a_huge_cell_is_cut_before_the_tokenizer_in_training(tmp_path, tiny_bert):
    from engine.data.loading import load_text_classification
    from engine.data.text_cells import char_limit

    data = tmp_path / "huge.csv"
    rows = [("the film was good", "positive"), ("the film was bad", "negative")] * 6
    rows[0] = ("good " * (HUGE // 5), "positive")
    with open(data, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("text", "label"), *rows])
    cfg = config_for(tmp_path, tiny_bert, data, validation_split=0.25)
    spy = Spy(_tokenizer(tiny_bert))
    loaded = load_text_classification(cfg, spy)
    assert spy.longest <= char_limit(cfg.data.max_length) < HUGE
    assert max(loaded.train.lengths + loaded.validation.lengths) == cfg.data.max_length
    # an ordinary cell's tokens are the tokenizer's own, untouched by the cut
    plain = _tokenizer(tiny_bert)("the film was good", truncation=True, max_length=32)
    assert plain["input_ids"] in loaded.train.input_ids + loaded.validation.input_ids


def test_a_huge_cell_is_cut_before_the_tokenizer_in_preview(tmp_path, tiny_bert, monkeypatch):
    import engine.modeling.loading as loading
    from engine.modeling.lengths import MAX_COUNTED, token_lengths

    data = tmp_path / "huge.csv"
    with open(data, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([("text", "label"), ("good " * (HUGE // 5), "a"),
                                  ("short one", "b")])
    spies = []
    real = loading.load_tokenizer

    def spying(spec, path=None):
        tokenizer, folder = real(spec, path)
        spies.append(Spy(tokenizer))
        return spies[-1], folder

    monkeypatch.setattr(loading, "load_tokenizer", spying)
    stats = token_lengths(str(tiny_bert), data, ["text"])
    assert spies and spies[0].longest < HUGE
    assert stats.rows == 2 and stats.longest >= 512  # still counted as far too long
    assert stats.longest <= MAX_COUNTED + 2


def test_environment_knobs_have_upper_bounds(monkeypatch):
    from engine.runs.queue import QueueSettings

    for name, value in (("HUBTUNE_CPU_SLOTS", "1000000000"), ("HUBTUNE_CPU_SLOTS", "9" * 5000),
                        ("HUBTUNE_GPU_BUSY_UTIL", "101"),
                        ("HUBTUNE_GPU_BUSY_MIB", str(1 << 40)), ("HUBTUNE_CPU_SLOTS", "²")):
        with pytest.raises(HubtuneError, match=f"^{name} must be a whole number from"):
            QueueSettings.from_env({name: value})
    assert QueueSettings.from_env({"HUBTUNE_CPU_SLOTS": " 4 "}).cpu_slots == 4
    monkeypatch.setenv("HUBTUNE_CPU_SLOTS", "1000000000")
    started = time.monotonic()
    result = hubtune("queue", "slots")
    assert result.returncode != 0 and "from 1 to 1,024" in one_sentence(result)
    assert time.monotonic() - started < 10


BIG_ID = "99999999999999999999999"


@pytest.mark.parametrize("args", [
    ("runs", "show", BIG_ID), ("runs", "stop", BIG_ID), ("runs", "follow", BIG_ID),
    ("runs", "resume", BIG_ID), ("runs", "fork", BIG_ID), ("runs", "rm", "1", BIG_ID),
    ("runs", "tag", BIG_ID, "x"), ("runs", "note", BIG_ID, "x"),
    ("runs", "compare", "1", BIG_ID), ("runs", "errors", BIG_ID),
    ("runs", "export", BIG_ID, "--metrics", "m.csv"), ("export", BIG_ID, "out"),
    ("predict", BIG_ID, "text"), ("queue", "top", BIG_ID), ("queue", "mv", BIG_ID, "1"),
])
def test_a_run_id_too_big_for_sqlite_is_no_such_run(store, args):
    result = hubtune(*args)
    assert result.returncode != 0
    assert f"There is no run {BIG_ID}" in one_sentence(result)


def test_a_run_id_too_big_for_sqlite_is_no_such_run_in_the_store(store, tmp_path):
    for call in (lambda: store.get_run(10**25), lambda: store.set_notes(10**25, "x"),
                 lambda: store.delete_run(-10**25)):
        with pytest.raises(StoreError, match="There is no run"):
            call()
    cfg = config_for(tmp_path, tmp_path, tmp_path / "d.csv").to_dict()
    cfg["model"]["id"] = f"run:{BIG_ID}"
    from engine.launch.start import start_run

    with pytest.raises(HubtuneError, match=f"model.id run:{BIG_ID} names no recorded run"):
        start_run(store, RunConfig.from_dict(cfg))
    assert store.count_runs() == 0


# -- class 5: data read the same way whatever its source -------------------------------


def _rows(n: int = 16) -> tuple[list[str], list[str]]:
    texts = [f"the film was {'good' if i % 2 else 'bad'} {i}" for i in range(n)]
    return texts, ["pos" if i % 2 else "neg" for i in range(n)]


def test_a_jsonl_text_column_of_lists_is_a_sentence_before_a_run_is_recorded(tmp_path,
                                                                             tiny_bert, store):
    texts, labels = _rows()
    data = tmp_path / "lists.jsonl"
    data.write_text("".join(json.dumps({"text": t.split(), "label": y}) + "\n"
                            for t, y in zip(texts, labels, strict=True)), encoding="utf-8")
    from engine.data.loading import check_text_classification

    cfg = config_for(tmp_path, tiny_bert, data)
    with pytest.raises(DataError, match=r"holds lists in its text column 'text' "
                                        r"\(data.text_column\) \(row 1 has \['the'"):
        check_text_classification(cfg)
    path = tmp_path / "lists.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    result = hubtune("train", str(path), "--detach")
    assert result.returncode != 0
    assert "holds lists in its text column 'text'" in one_sentence(result)
    assert "Internal error" not in result.stderr
    assert store.count_runs() == 0  # refused before anything was recorded


def _hub_repo(folder: Path, text_values: list) -> Path:
    import datasets

    _, labels = _rows(len(text_values))
    (folder / "data").mkdir(parents=True)
    for split in ("train", "validation"):
        datasets.Dataset.from_dict(
            {"text": text_values, "label": labels},
            features=datasets.Features({
                "text": (datasets.List(datasets.Value("string"))
                         if isinstance(text_values[0], list) else datasets.Value("string")),
                "label": datasets.Value("string")}),
        ).to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


@pytest.fixture
def odd_hub(tmp_path_factory, hf_cache, monkeypatch):
    """A loopback hub holding a text column of lists and one of nothing but nulls."""
    from tests.support.hub_datasets import serve_repos
    from tests.support.hub_server import Repo

    root = tmp_path_factory.mktemp("odd-hub")
    texts, _ = _rows()
    repos = [Repo("hubtune-test/list-text", _hub_repo(root / "lists", [t.split() for t in texts]),
                  repo_type="dataset"),
             Repo("hubtune-test/null-text", _hub_repo(root / "nulls", [None] * len(texts)),
                  repo_type="dataset")]
    with serve_repos(repos, monkeypatch) as server:
        yield server, root


@pytest.mark.parametrize("repo", ["lists", "nulls"])
def test_hub_text_of_lists_or_nulls_is_refused_as_the_same_file_is(odd_hub, tmp_path,
                                                                    tiny_bert, repo):
    from engine.data.loading import check_text_classification
    from engine.tasks import task_for

    _, root = odd_hub
    local = root / repo / "data" / "train-00000-of-00001.parquet"
    with pytest.raises(DataError) as from_file:
        check_text_classification(config_for(tmp_path, tiny_bert, local))
    name = {"lists": "list-text", "nulls": "null-text"}[repo]
    cfg = config_for(tmp_path, tiny_bert, Path("x"), max_steps=2).to_dict()
    cfg["data"] = {"train": f"hf:hubtune-test/{name}", "max_length": 32}
    cfg = RunConfig.from_dict(cfg)
    task = task_for(cfg.head.task)
    with pytest.raises(DataError) as from_hub:
        task.load_data(cfg, _tokenizer(tiny_bert))
    # The same sentence, naming its own source.
    where = f"hf:hubtune-test/{name} (split train)"
    assert str(from_hub.value).startswith(where)
    assert str(from_file.value).removeprefix(str(local)) == \
        str(from_hub.value).removeprefix(where)
    expected = ("holds lists in its text column" if repo == "lists" else
                "has no text in its column 'text' (data.text_column): every row is empty")
    assert expected in str(from_hub.value)


# -- a trained run for predict, export and review ---------------------------------------


def _write_rows(path: Path, rows: list[tuple[str, str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as fh:
        csv.writer(fh).writerows([("text", "label"), *rows])
    return path


CAFE = [(f"the café was {'good' if i % 2 else 'bad'} {i}", "pos" if i % 2 else "neg")
        for i in range(24)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    """A completed run trained (one step) on a latin-1 file, with its own copy of the base
    model; its data directory is copied for each test (`run`)."""
    root = tmp_path_factory.mktemp("round3-run")
    base = root / "base-model"
    shutil.copytree(tiny_bert, base)
    data = _write_rows(root / "cafe.csv", CAFE, "latin-1")
    cfg = config_for(root, base, data, max_steps=1, encoding="latin-1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBTUNE_HOME", str(root / "home"))
        run_id = train_in_process(cfg, "cafe.csv")
    return root, run_id


@pytest.fixture
def run(trained, hubtune_home):
    root, run_id = trained
    shutil.copytree(root / "home", hubtune_home)
    return root, run_id


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_predict_reads_a_new_file_in_its_own_encoding(run, tmp_path):
    _, run_id = run
    utf8 = _write_rows(tmp_path / "new.csv", CAFE[:4])  # the run's data was latin-1
    out = tmp_path / "out.csv"
    result = hubtune("predict", str(run_id), "--file", str(utf8), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "Note:" not in result.stderr
    with open(out, encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    assert texts == [t for t, _ in CAFE[:4]]  # not 'cafÃ©'

    # A file that is not UTF-8: the run's own encoding, with a note; or the one given.
    latin = _write_rows(tmp_path / "latin.csv", CAFE[:4], "latin-1")
    for extra, note in (((), True), (("--encoding", "latin-1"), False)):
        result = hubtune("predict", str(run_id), "--file", str(latin), "--out", str(out),
                         "--force", *extra)
        assert result.returncode == 0, result.stderr
        assert ("is not UTF-8 text (byte 0xe9 on line 2); read it as latin-1, the encoding "
                "of the run's data" in result.stderr) is note
        with open(out, encoding="utf-8") as fh:
            assert next(csv.DictReader(fh))["text"] == CAFE[0][0]
    result = hubtune("predict", str(run_id), "--file", str(latin), "--out", str(out),
                     "--force", "--encoding", "no-such-codec")
    assert "'no-such-codec' is not a known text encoding" in one_sentence(result)


def test_a_file_the_run_would_misread_is_refused_not_guessed(run, tmp_path):
    import dataclasses

    from engine.trained.predict import predict_file

    root, run_id = run
    cfg = RunConfig.from_dict(RunStore().get_run(run_id).config)
    utf8_run = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, encoding="utf-8"))
    latin = _write_rows(tmp_path / "latin.csv", CAFE[:4], "latin-1")
    model = Path(RunStore().get_run(run_id).output_dir) / "model"
    with pytest.raises(DataError, match=r"is not UTF-8 text \(byte 0xe9 on line 2\); pass "
                                        "--encoding with the file's encoding"):
        predict_file(model, utf8_run, latin)
    bom16 = tmp_path / "utf16.csv"
    bom16.write_text("text,label\n" + "".join(f"{t},{y}\n" for t, y in CAFE[:3]),
                     encoding="utf-16")
    done = predict_file(model, utf8_run, bom16)
    assert list(done.table["text"]) == [t for t, _ in CAFE[:3]] and done.notes == ()


def test_a_huge_cell_is_cut_before_the_tokenizer_in_predict(run, tmp_path):
    from engine.data.text_cells import char_limit
    from engine.trained.predict import Predictor

    _, run_id = run
    predictor = Predictor(Path(RunStore().get_run(run_id).output_dir) / "model")
    spy = predictor.tokenizer = Spy(predictor.tokenizer)
    scores = predictor.score_batches(["good " * (HUGE // 5), "bad"], max_length=32)
    assert scores.shape[0] == 2 and spy.longest <= char_limit(32) < HUGE


# -- class 9: --force never replaces an input; outputs follow the umask ----------------


def test_predict_never_writes_over_the_file_it_reads(run, tmp_path):
    _, run_id = run
    data = _write_rows(tmp_path / "in.csv", CAFE[:4])
    before = data.read_bytes()
    link = tmp_path / "hard-link.csv"
    os.link(data, link)
    (tmp_path / "sym.csv").symlink_to(data)
    for out in (data, link, tmp_path / "sym.csv", tmp_path / "." / "in.csv"):
        result = hubtune("predict", str(run_id), "--file", str(data), "--out", str(out),
                         "--force")
        assert result.returncode != 0
        assert "which this command reads; write the output somewhere else" in \
            one_sentence(result)
    assert data.read_bytes() == before


def test_export_never_writes_over_the_runs_base_model(run, tmp_path):
    root, run_id = run
    base = root / "base-model"
    before = {p.name: p.read_bytes() for p in base.iterdir() if p.is_file()}
    result = hubtune("export", str(run_id), str(base), "--force")
    assert result.returncode != 0
    assert "is the run's base model folder, which this command reads" in one_sentence(result)
    assert {p.name: p.read_bytes() for p in base.iterdir() if p.is_file()} == before


def test_files_written_for_the_user_follow_the_umask(run, tmp_path, umask_022):
    _, run_id = run
    data = _write_rows(tmp_path / "in.csv", CAFE[:4])
    out = tmp_path / "out.csv"
    assert hubtune("predict", str(run_id), "--file", str(data), "--out",
                   str(out)).returncode == 0
    assert _mode(out) == 0o644
    metrics = tmp_path / "metrics.csv"
    assert hubtune("runs", "export", str(run_id), "--metrics", str(metrics)).returncode == 0
    assert _mode(metrics) == 0o644
    folder = tmp_path / "exported"
    result = hubtune("export", str(run_id), str(folder))
    assert result.returncode == 0, result.stderr
    assert _mode(folder) == 0o755
    assert all(_mode(p) == 0o644 for p in folder.rglob("*") if p.is_file())
    os.umask(0o027)
    assert hubtune("predict", str(run_id), "--file", str(data), "--out", str(out),
                   "--force").returncode == 0
    assert _mode(out) == 0o640


# -- class 6: review shows only what the run saw ---------------------------------------


def test_review_refuses_data_whose_content_changed_with_the_same_rows(run):
    root, run_id = run
    data = root / "cafe.csv"
    saved = data.read_bytes()
    try:
        ok = hubtune("runs", "errors", str(run_id), "--json")
        assert ok.returncode == 0, ok.stderr
        assert "Note:" not in ok.stderr
        assert json.loads(ok.stdout)["examples"] == 6
        # the same rows, labels and count; one text edited
        edited = [(t.replace("café", "bistro") if i == 5 else t, y)
                  for i, (t, y) in enumerate(CAFE)]
        _write_rows(data, edited, "latin-1")
        for args in (("runs", "errors", str(run_id)),
                     ("runs", "compare", str(run_id), str(run_id), "--examples")):
            result = hubtune(*args)
            assert result.returncode != 0
            assert f"Run {run_id}'s data files changed since it trained ({data} no longer " \
                   "holds what it read)" in one_sentence(result)
    finally:
        data.write_bytes(saved)


def test_review_of_a_run_without_a_fingerprint_falls_back_with_a_note(run):
    import sqlite3

    _, run_id = run
    store = RunStore()
    summary = store.get_run(run_id).summary
    assert summary["dataset"]["kind"] == "content-sha256"
    del summary["dataset"]
    with sqlite3.connect(store.path) as conn:
        conn.execute("UPDATE runs SET summary_json = ? WHERE id = ?",
                     [json.dumps(summary), run_id])
    result = hubtune("runs", "errors", str(run_id), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["examples"] == 6
    assert f"Note: Run {run_id} recorded no fingerprint of its data files" in result.stderr


def _moving_repo(folder: Path, word: str) -> Path:
    import datasets

    (folder / "data").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 24), ("validation", 8)):
        texts, labels = _rows(n)
        datasets.Dataset.from_dict({"text": [f"{t} {word}" for t in texts], "label": labels}
                                   ).to_parquet(str(folder / "data" /
                                                    f"{split}-00000-of-00001.parquet"))
    return folder


@pytest.mark.slow
def test_review_of_hub_data_reads_the_commit_the_run_recorded(tmp_path, tiny_bert, hf_cache,
                                                              monkeypatch):
    import huggingface_hub.constants as hf_constants

    from engine.data.hub.fetch import fetch_dataset
    from tests.support.hub_datasets import serve_repos
    from tests.support.hub_server import Repo

    folder = _moving_repo(tmp_path / "moving", "then")
    repo = Repo("hubtune-test/moving", folder, repo_type="dataset")
    cfg = config_for(tmp_path, tiny_bert, Path("x"), max_steps=1).to_dict()
    cfg["data"] = {"train": "hf:hubtune-test/moving", "max_length": 32}
    with serve_repos([repo], monkeypatch):
        run_id = train_in_process(RunConfig.from_dict(cfg), "hf:hubtune-test/moving")
        trained_at = RunStore().get_run(run_id).summary["dataset"]["sha"]
        _moving_repo(folder, "now")  # the branch moves on: same rows and labels, new text
        monkeypatch.setattr("engine.data.hub.fetch.INFO_TTL_S", -1.0)  # ask the hub again
        assert repo.sha != trained_at
        assert fetch_dataset("hubtune-test/moving").sha == repo.sha  # main, cached, is new
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = hubtune("runs", "errors", str(run_id), "--limit", "100", "--json")
    assert result.returncode == 0, result.stderr
    inputs = [e["input"] for e in json.loads(result.stdout)["errors"]]
    assert len(inputs) == 8 and all(t.endswith(" then") for t in inputs)
