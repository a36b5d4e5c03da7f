"""Pushing an exported folder to the hub (engine/hub/push.py, #36) against the loopback
hub, which speaks the upload protocol huggingface_hub uses (repo creation, preupload,
LFS batch, PUT, verify, commit: tests/support/hub_upload.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.hub.errors import HubError
from engine.hub.push import push_folder
from tests.support.hub_upload import READ_TOKEN, WRITE_TOKEN


@pytest.fixture
def hub(hub_server, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the LFS protocol
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    return hub_server


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "exported"
    out.mkdir()
    (out / "config.json").write_text('{"model_type": "bert"}')
    (out / "model.safetensors").write_bytes(os.urandom(6000))
    (out / "README.md").write_text("---\nlibrary_name: transformers\n---\n# tuned\n")
    (out / "tokenizer").mkdir()
    (out / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    return out


def test_a_pushed_folder_downloads_back_byte_for_byte(hub, folder, tmp_path):
    from huggingface_hub import snapshot_download

    url = push_folder(folder, "alice/tuned")
    assert url.startswith(hub.url) and "alice/tuned" in url
    assert hub.uploads.commits == ["alice/tuned"]
    assert len(hub.uploads.puts) == 1  # the weights went by LFS; the small files inline
    got = Path(snapshot_download("alice/tuned", cache_dir=tmp_path / "cache"))
    for f in ("config.json", "model.safetensors", "README.md", "tokenizer/vocab.txt"):
        assert (got / f).read_bytes() == (folder / f).read_bytes(), f


def test_a_push_run_again_sends_only_what_the_hub_lacks(hub, folder):
    push_folder(folder, "alice/again")
    push_folder(folder, "alice/again")  # the repo exists (409 is fine) and holds the weights
    assert len(hub.uploads.puts) == 1 and hub.uploads.commits == ["alice/again"] * 2
    (folder / "model.safetensors").write_bytes(os.urandom(6000))  # new weights: sent
    push_folder(folder, "alice/again")
    assert len(hub.uploads.puts) == 2


@pytest.mark.parametrize("token, words", [
    (None, "wants a token to push alice/tuned: log in with `hf auth login` or set HF_TOKEN"),
    (READ_TOKEN, "cannot write to alice/tuned: it needs write access to 'alice'"),
])
def test_refusals_are_one_sentence_and_name_what_to_do(hub, folder, monkeypatch, token,
                                                       words):
    import huggingface_hub.constants as constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(folder / "no-token-here"))
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    with pytest.raises(HubError) as err:
        push_folder(folder, "alice/tuned")
    assert words in str(err.value) and "\n" not in str(err.value)
    assert READ_TOKEN not in str(err.value) and hub.uploads.commits == []


def test_a_bad_name_or_an_empty_folder_is_refused_before_the_hub_is_asked(hub, folder,
                                                                         tmp_path):
    with pytest.raises(HubError, match="Model"):
        push_folder(folder, "../../etc")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HubError, match="not an exported model folder"):
        push_folder(tmp_path / "empty", "alice/tuned")
    assert not [r for r in hub.requests if r[0] in ("POST", "PUT")]


@pytest.mark.parametrize("status, words", [
    (409, "alice/tuned changed on the hub while the push ran"),
    (500, "The hub answered HTTP 500 to the push of alice/tuned; run it again later"),
])
def test_a_hub_that_answers_an_error_is_not_called_unreachable(hub, folder, monkeypatch,
                                                               status, words):
    uploads = hub.uploads
    monkeypatch.setattr(uploads, "_commit", lambda handler, repo_id, body: uploads._reply(
        handler, status, {"error": "no"}))
    with pytest.raises(HubError) as err:
        push_folder(folder, "alice/tuned")
    assert words in str(err.value) and "cannot be reached" not in str(err.value)


@pytest.mark.slow  # trains a tiny run
def test_a_pushed_run_downloads_into_a_fresh_cache_and_predicts_as_the_run_does(
        hub, store, tmp_path, tiny_bert, sentiment_csv):
    """The round trip of #36: `hubtune export ID DIR --push`, then what a user elsewhere
    does: snapshot_download into an empty cache, load with transformers, predict."""
    import csv

    import torch
    from huggingface_hub import snapshot_download
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from engine.trained.predict import Predictor
    from tests.support.cli_runner import ok
    from tests.support.tests_helpers import config_for, train_in_process

    run_id = train_in_process(config_for(tmp_path, tiny_bert, sentiment_csv, epochs=1))
    pushed = ok("export", str(run_id), str(tmp_path / "exported"), "--push", "alice/round")
    assert "Pushed to" in pushed.stdout and hub.uploads.commits == ["alice/round"]
    with open(sentiment_csv, newline="", encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)][:40]
    local = Predictor(Path(store.get_run(run_id).output_dir) / "model").predict(texts)

    fresh = tmp_path / "elsewhere-cache"
    got = Path(snapshot_download("alice/round", cache_dir=fresh))
    assert got.is_relative_to(fresh) and (got / "model.safetensors").is_file()
    model = AutoModelForSequenceClassification.from_pretrained(got, trust_remote_code=True)
    tokenizer = AutoTokenizer.from_pretrained(got)
    with torch.no_grad():
        logits = model.eval()(**tokenizer(texts, padding=True, truncation=True,
                                          max_length=32, return_tensors="pt")).logits
    assert [model.config.id2label[int(i)] for i in logits.argmax(-1)] == [p.label
                                                                          for p in local]
    # The same probabilities too: a tiny run may give every text one label, and the
    # probabilities still tell a wrong or stale upload apart.
    mine = torch.tensor([[p.scores[model.config.id2label[i]] for i in range(2)]
                         for p in local])
    assert torch.allclose(logits.softmax(-1), mine, atol=1e-5)
    assert mine[:, 0].max() - mine[:, 0].min() > 1e-4  # texts the model tells apart
