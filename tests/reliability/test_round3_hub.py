"""A hostile or broken hub, served by the loopback hub: nothing it says escapes the cache,
every answer is a sentence or works, and a dataset card cannot exhaust the machine.

Each case is tried from the engine API and from the CLI (in-process, through click's
runner: a traceback fails the test). Online and offline (the copy cached for offline
use is as untrusted as the hub's answer it was made from).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import huggingface_hub.constants as hf_constants
import pytest

from engine.core.errors import HubtuneError

PRECIOUS = "precious, not a commit hash"


def one_sentence(result) -> str:
    """The error a command printed: one line, `Error: ...`, no traceback, exit 1."""
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not re.match(r"\s*[\d.]*%", line)]  # download progress
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert result.returncode == 1, (result.returncode, result.stdout)
    return lines[0]


def sentence(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text.endswith("."), text
    return text


def cli(*args: str):
    from tests.support.cli_runner import hubtune

    return hubtune(*args)


def go_offline(monkeypatch) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# -- the repos ----------------------------------------------------------------------

FILE = "data/train-00000-of-00001.parquet"
DATA_STAR = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/*
---
# a dataset whose train split is every file under data/
"""
ODD_INFO = """---
dataset_info:
  features: 7
  splits:
    train: {num_examples: lots}
    validation: 12
configs:
- config_name: default
  data_files: data/*
  default: yes
- config_name: numbers
  data_files: 5
---
"""
BAD_NAMES = """---
configs:
- config_name: ../up
  default: true
  data_files:
  - split: train
    path: data/*
- config_name: odd-split
  data_files:
  - split: ../x
    path: data/*
---
"""


def _bomb(levels: int = 9) -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(levels):
        prev, name = chr(97 + i), chr(98 + i)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 10)}]")
    return "---\n" + "\n".join(lines) + "\nconfigs: [{config_name: default, data_files: data/*}]\n---\n"


def _deep(levels: int = 5000) -> str:
    return "---\nconfigs: " + "[" * levels + "]" * levels + "\n---\n"


def _parquet(path: Path, rows: int, word: str = "good") -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    labels = [i % 2 for i in range(rows)]
    texts = [f"the film was {word if i % 2 else 'awful'} {i}" for i in range(rows)]
    pq.write_table(pa.table({"text": pa.array(texts, pa.string()),
                             "label": pa.array(labels, pa.int64())}), path)
    return path


def _repo(root: Path, name: str, readme: str | None = None, rows: int = 24) -> Path:
    folder = root / name
    _parquet(folder / FILE, rows)
    if readme is not None:
        (folder / "README.md").write_text(readme, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    (model / "model.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0{}      " + bytes(range(200)))
    empty = root / "empty"
    _parquet(empty / FILE, 0)
    empty_jsonl = root / "empty-jsonl"
    (empty_jsonl / "data").mkdir(parents=True)
    (empty_jsonl / "data" / "train.jsonl").write_text("")
    return {"plain": _repo(root, "plain"), "star": _repo(root, "star", DATA_STAR),
            "odd-info": _repo(root, "odd-info", ODD_INFO),
            "bad-names": _repo(root, "bad-names", BAD_NAMES),
            "bomb": _repo(root, "bomb", _bomb()), "deep": _repo(root, "deep", _deep()),
            "model": model, "empty": empty, "empty-jsonl": empty_jsonl}


@pytest.fixture
def hub(folders, hf_cache, monkeypatch):
    from tests.support.hub_datasets import serve_repos
    from tests.support.hub_server import Repo

    def data(repo_id: str, folder: str, **kw) -> Repo:
        return Repo(repo_id, folders[folder], repo_type="dataset", **kw)

    repos = [
        data("ok/fine", "plain", downloads=7, likes=2),
        data("ok/star", "star"),
        data("evil/any-rev", "plain", any_revision=True),
        Repo("evil/any-rev-model", folders["model"], any_revision=True),
        data("evil/dotdot", "star",
             listed_files={"data/" + "../" * 5 + "outside.parquet": FILE}),
        data("evil/absolute", "star", listed_files={"/tmp/outside.parquet": FILE}),
        data("evil/tampered", "plain", tampered=(FILE,)),
        Repo("evil/tampered-model", folders["model"], tampered=("model.safetensors",)),
        data("evil/bad-sha", "plain", card_overrides={"sha": "../../../x"}),
        Repo("evil/bad-sha-model", folders["model"], card_overrides={"sha": "../../x"}),
        data("evil/bad-names", "bad-names"),
        Repo("evil/etag-model", folders["model"],
             file_headers={"ETag": '"../../../victim"'}),
        data("evil/commit-header", "plain", file_headers={"X-Repo-Commit": "../../victim"}),
        data("evil/odd-meta", "plain", card_overrides={
            "lastModified": "yesterday", "downloads": "many", "likes": "12", "tags": "x",
            "gated": "maybe", "private": "no", "createdAt": 5}),
        Repo("evil/odd-model", folders["model"], downloads=3, card_overrides={
            "lastModified": 1700000000, "downloads": "lots", "likes": [1],
            "pipeline_tag": 7, "library_name": {"a": 1}, "inferenceProviderMapping": 3}),
        data("evil/odd-info", "odd-info"),
        data("evil/loop", "plain", redirect_loop=True),
        Repo("evil/loop-model", folders["model"], redirect_loop=True),
        data("evil/empty", "empty"),
        data("evil/empty-jsonl", "empty-jsonl"),
        data("evil/bomb", "bomb", card_overrides={"cardData": {}}),
        data("evil/deep", "deep", card_overrides={"cardData": {}}),
    ]
    with serve_repos(repos, monkeypatch) as server:
        yield server


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.write_text(PRECIOUS)
    return victim


# -- class 2: nothing the hub says escapes the cache ---------------------------------


def test_a_revision_that_is_a_path_is_refused_before_anything_is_written(hub, tmp_path,
                                                                         hf_cache):
    from engine.data.hub.fetch import fetch_dataset
    from engine.hub.client import download_model

    victim = _victim(tmp_path)
    # refs/<revision> of the repo's cache folder would be tmp_path/victim.
    revision = "../../../victim"
    with pytest.raises(HubtuneError) as err:
        fetch_dataset("evil/any-rev", revision=revision, splits=("train",))
    assert sentence(err).startswith("Revision '../../../victim' of hf:evil/any-rev is not a "
                                    "branch, tag or commit name")
    with pytest.raises(HubtuneError):
        download_model("evil/any-rev-model", revision=revision)
    for args in (("hub", "download", "evil/any-rev-model", "--revision", revision),
                 ("hub", "download", "hf:evil/any-rev", "--revision", revision),
                 ("hub", "info", "hf:evil/any-rev", "--revision", revision),
                 ("data", "preview", "hf:evil/any-rev", "--revision", revision),
                 ("data", "preview", "hf:evil/any-rev", "--revision", "/etc/passwd")):
        assert "is not a branch, tag or commit name" in one_sentence(cli(*args))
    assert victim.read_text() == PRECIOUS
    assert not list(tmp_path.glob("*victim*.tmp"))
    # A branch with a slash is still a branch.
    assert fetch_dataset("evil/any-rev", revision="feature/x", splits=("train",)).splits


def test_a_tree_entry_that_leaves_the_snapshot_is_refused_online(hub, tmp_path):
    from engine.data.hub.fetch import fetch_dataset

    outside = _parquet(tmp_path / "outside.parquet", 4, word="SECRET")
    for repo in ("evil/dotdot", "evil/absolute"):
        with pytest.raises(HubtuneError) as err:
            fetch_dataset(repo, splits=("train",))
        assert "that cannot be a file of a repo" in sentence(err)
        out = cli("data", "preview", f"hf:{repo}")
        assert "hubtune refuses to read it" in one_sentence(out) and "SECRET" not in out.stdout
    assert outside.is_file()


def test_a_cached_tree_entry_that_leaves_the_snapshot_is_refused_offline(hub, tmp_path,
                                                                        hf_cache, monkeypatch):
    from engine.data.hub.fetch import fetch_dataset

    files = fetch_dataset("ok/star", splits=("train",))
    _parquet(tmp_path / "outside.parquet", 4, word="SECRET")
    tree = hf_cache / "datasets--ok--star" / "trees" / f"{files.sha}.json"
    listing = json.loads(tree.read_text())
    entry = next(iter(listing["files"].values()))
    listing["files"]["data/" + "../" * 5 + "outside.parquet"] = entry
    tree.write_text(json.dumps(listing))
    go_offline(monkeypatch)
    with pytest.raises(HubtuneError) as err:
        fetch_dataset("ok/star", splits=("train",))
    assert sentence(err).startswith("Dataset hf:ok/star (cached for offline use) lists a file "
                                    "'data/../../../../../outside.parquet'")
    out = cli("data", "preview", "hf:ok/star", "--json")
    assert "(cached for offline use) lists a file" in one_sentence(out)
    assert "SECRET" not in out.stdout
    # The same with an absolute path.
    del listing["files"]["data/" + "../" * 5 + "outside.parquet"]
    listing["files"][str(tmp_path / "outside.parquet")] = entry
    tree.write_text(json.dumps(listing))
    assert "it is an absolute path" in one_sentence(cli("data", "preview", "hf:ok/star"))


def test_a_download_whose_bytes_differ_from_the_listed_sha256_is_refused_and_removed(
        hub, hf_cache, monkeypatch):
    from engine.data.hub.fetch import dataset_file, fetch_dataset
    from engine.hub.client import download_model

    with pytest.raises(HubtuneError) as err:
        fetch_dataset("evil/tampered", splits=("train",))
    assert sentence(err).startswith(f"Dataset hf:evil/tampered: the file '{FILE}' that came "
                                    "down does not match the sha256 the hub listed")
    blobs = hf_cache / "datasets--evil--tampered" / "blobs"
    assert not [b for b in blobs.iterdir() if b.stat().st_size > 200]  # the bad bytes are gone
    assert "does not match the sha256" in one_sentence(cli("data", "preview",
                                                          "hf:evil/tampered"))
    # Streaming fetches file by file: each is checked too.
    remote = fetch_dataset("evil/tampered", splits=("train",), download=False)
    with pytest.raises(HubtuneError, match="does not match the sha256"):
        dataset_file(remote, remote.splits["train"][0])
    with pytest.raises(HubtuneError, match="does not match the sha256"):
        download_model("evil/tampered-model")
    assert "does not match the sha256" in one_sentence(
        cli("hub", "download", "evil/tampered-model"))
    # Offline, nothing of it is left to read.
    go_offline(monkeypatch)
    with pytest.raises(HubtuneError, match="not \\(wholly\\) in the local cache"):
        fetch_dataset("evil/tampered", splits=("train",))
    # Honest files still come down and verify.
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    assert fetch_dataset("ok/fine", splits=("train",)).splits["train"][0].is_file()


def test_a_commit_that_is_not_a_hash_is_refused(hub):
    from engine.data.hub.fetch import fetch_dataset
    from engine.data.hub.search import dataset_details
    from engine.hub.client import model_details

    with pytest.raises(HubtuneError) as err:
        fetch_dataset("evil/bad-sha", splits=("train",))
    assert sentence(err) == ("The hub answered '../../../x' as the commit of hf:evil/bad-sha, "
                             "which is not a commit hash; hubtune refuses to use it.")
    with pytest.raises(HubtuneError, match="not a commit hash"):
        dataset_details("evil/bad-sha")
    with pytest.raises(HubtuneError, match="not a commit hash"):
        model_details("evil/bad-sha-model")
    assert "not a commit hash" in one_sentence(cli("hub", "info", "evil/bad-sha-model"))


def test_file_headers_that_name_paths_are_refused_before_a_blob_is_written(hub, tmp_path,
                                                                          hf_cache):
    from engine.data.hub.fetch import fetch_dataset
    from engine.hub.client import download_model

    # blobs/<etag> of the model's cache folder would be tmp_path/victim.
    victim = _victim(tmp_path)
    with pytest.raises(HubtuneError) as err:
        download_model("evil/etag-model")
    assert sentence(err).startswith("The hub answered an ETag '\"../../../victim\"' that "
                                    "cannot name a file of the cache")
    assert "cannot name a file of the cache" in one_sentence(
        cli("hub", "download", "evil/etag-model"))
    with pytest.raises(HubtuneError, match="a commit '../../victim' that is not a commit hash"):
        fetch_dataset("evil/commit-header", splits=("train",))
    assert victim.read_text() == PRECIOUS
    assert not (hf_cache / "models--evil--etag-model" / "blobs").is_dir() or not any(
        (hf_cache / "models--evil--etag-model" / "blobs").iterdir())


def test_subset_and_split_names_that_are_paths_are_refused(hub):
    from engine.data.hub.fetch import fetch_dataset

    with pytest.raises(HubtuneError) as err:
        fetch_dataset("evil/bad-names", splits=("train",))
    assert sentence(err) == ("hf:evil/bad-names names a subset '../up', which is not a plain "
                             "name (a separator, '.', '..' or a control character); hubtune "
                             "refuses it.")
    with pytest.raises(HubtuneError, match="names a split '../x'"):
        fetch_dataset("evil/bad-names", subset="odd-split")
    with pytest.raises(HubtuneError, match="names a split '..'"):
        fetch_dataset("ok/fine", splits=("..",))
    assert "names a split '..'" in one_sentence(cli("data", "preview", "hf:ok/fine:.."))
    assert "names a subset" in one_sentence(cli("data", "preview", "hf:evil/bad-names"))


@pytest.mark.parametrize("repo", ["a/b/c", "../..", "bad--name", "dash-", "x" * 97, "a/.."])
def test_repo_ids_the_hub_would_refuse_are_one_sentence(hub, repo):
    from engine.data.hub.fetch import fetch_dataset
    from engine.hub.client import download_model, model_details

    for call in (lambda: model_details(repo), lambda: download_model(repo),
                 lambda: fetch_dataset(repo, splits=("train",))):
        with pytest.raises(HubtuneError) as err:
            call()
        assert "is not a hub repo id; write OWNER/NAME" in sentence(err)
    for args in (("hub", "info", repo), ("hub", "download", repo),
                 ("hub", "info", repo, "--repo-type", "dataset"),
                 ("hub", "download", repo, "--repo-type", "dataset")):
        assert "is not a hub repo id" in one_sentence(cli(*args))
    if "/" in repo and repo.count("/") == 1 and ":" not in repo:
        out = cli("data", "preview", f"hf:{repo}")
        assert "Traceback" not in out.stderr and out.returncode == 1


# -- class 4: every answer is a sentence or works ------------------------------------


def test_one_entry_with_odd_metadata_never_breaks_a_search(hub):
    from engine.data.hub.search import dataset_details, search_datasets
    from engine.hub.client import search_models

    found = {d.id: d for d in search_datasets(limit=100)}
    assert {"ok/fine", "evil/odd-meta", "evil/tampered"} <= set(found)
    odd = found["evil/odd-meta"]
    assert (odd.downloads, odd.likes, odd.updated, odd.tasks) == (0, 12, None, ())
    assert found["ok/fine"].downloads == 7 and found["ok/fine"].updated.startswith("2026-01-01")
    models = {m.id: m for m in search_models(limit=100)}
    odd_model = models["evil/odd-model"]
    assert (odd_model.downloads, odd_model.likes, odd_model.updated, odd_model.task,
            odd_model.library) == (0, 0, None, None, None)
    details = dataset_details("evil/odd-meta")
    assert details.updated is None and details.downloads == 0 and details.likes == 12
    for args in (("hub", "search", "--repo-type", "dataset"), ("hub", "search"),
                 ("hub", "search", "--repo-type", "dataset", "--json"),
                 ("hub", "info", "hf:evil/odd-meta")):
        out = cli(*args)
        assert out.returncode == 0, out.stderr
        assert "odd-m" in out.stdout


@pytest.mark.slow  # `hub info` of a model imports transformers to name the heads that fit
def test_a_model_with_odd_metadata_is_shown_as_best_it_can(hub):
    out = cli("hub", "info", "evil/odd-model", "--json")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert (shown["downloads"], shown["likes"], shown["updated"], shown["task"]) == \
        (0, 0, None, None)


def test_readme_dataset_info_of_unexpected_shapes_is_shown_as_best_it_can(hub):
    from engine.data.hub.fetch import fetch_dataset
    from engine.data.hub.preview import preview_split
    from engine.data.hub.search import dataset_details

    details = dataset_details("evil/odd-info")
    default = details.subset("default")
    assert [(s.name, s.rows) for s in default.splits] == [("train", None)]
    assert default.features == () and details.subset("numbers").splits == ()
    files = fetch_dataset("evil/odd-info", splits=("train",))
    assert files.split_sizes() == {}
    preview = preview_split(files, "train")
    assert preview.split_rows == {"train": 24} and len(preview.rows) == 5
    assert cli("hub", "info", "hf:evil/odd-info").returncode == 0
    assert cli("data", "preview", "hf:evil/odd-info", "--json").returncode == 0


def test_a_redirect_loop_is_one_sentence(hub):
    from engine.data.hub.fetch import fetch_dataset
    from engine.data.hub.search import dataset_details
    from engine.hub.client import download_model, model_details

    calls = (lambda: model_details("evil/loop-model"), lambda: dataset_details("evil/loop"),
             lambda: fetch_dataset("evil/loop", splits=("train",)),
             lambda: download_model("evil/loop-model"))
    for call in calls:
        with pytest.raises(HubtuneError) as err:
            call()
        assert "redirected in a loop" in sentence(err)
    for args in (("hub", "info", "evil/loop-model"), ("hub", "info", "hf:evil/loop"),
                 ("data", "preview", "hf:evil/loop"), ("hub", "download", "hf:evil/loop")):
        assert "redirected in a loop" in one_sentence(cli(*args))


@pytest.mark.slow  # loads a tokenizer
@pytest.mark.parametrize("repo", ["evil/empty", "evil/empty-jsonl"])
def test_a_split_with_no_rows_previews_empty_and_trains_to_a_sentence(hub, repo, tiny_bert):
    from engine.core.config import RunConfig
    from engine.data.hub.fetch import fetch_dataset
    from engine.data.hub.preview import preview_split
    from engine.tasks import task_for

    files = fetch_dataset(repo, splits=("train",))
    try:
        preview = preview_split(files, "train")
        assert preview.rows == () and preview.read_rows == 0
    except HubtuneError as err:
        assert "has no rows" in str(err)
    out = cli("data", "preview", f"hf:{repo}")
    assert out.returncode == 0 or "has no rows" in one_sentence(out)
    cfg = RunConfig.from_dict({"model": {"id": str(tiny_bert)},
                               "head": {"task": "text-classification"},
                               "data": {"train": f"hf:{repo}", "max_length": 16}})
    task = task_for(cfg.head.task)
    tokenizer, _ = task.load_processor(cfg)
    with pytest.raises(HubtuneError) as err:
        task.load_data(cfg, tokenizer)
    assert "no rows" in sentence(err) or "no labels" in sentence(err)


# -- class 3 (the card's part): a dataset card cannot exhaust the machine ------------


@pytest.mark.parametrize("repo, words", [("evil/bomb", "expands to more than"),
                                         ("evil/deep", "nests its YAML deeper than")])
def test_a_card_whose_yaml_explodes_is_refused_in_bounded_time(hub, repo, words):
    import time

    from engine.data.hub.fetch import fetch_dataset
    from engine.data.hub.search import dataset_details

    started = time.monotonic()
    for call in (lambda: dataset_details(repo), lambda: fetch_dataset(repo, splits=("train",))):
        with pytest.raises(HubtuneError) as err:
            call()
        assert sentence(err).startswith(f"The card of hf:{repo} ") and words in str(err.value)
    for args in (("hub", "info", f"hf:{repo}"), ("data", "preview", f"hf:{repo}")):
        assert words in one_sentence(cli(*args))
    assert time.monotonic() - started < 60  # seconds on a loaded two-core machine
