"""`hubtune data preview hf:...` and `hubtune train` on a hub dataset, against the loopback
hub: the preview reads one file of one split; a run records the dataset and its commit."""

from __future__ import annotations

import json

import pytest

from tests.support.cli_runner import hubtune

SENTIMENT = "hubtune-test/sentiment"


def test_preview_reads_the_first_file_and_the_card_for_sizes(hub_server, tiny_bert):
    result = hubtune("data", "preview", f"hf:{SENTIMENT}", "--json", "--model", str(tiny_bert))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["subset"] == "reviews" and out["subsets"] == ["reviews", "short"]
    assert out["features"] == {"text": "string", "label": "class_label(neg, pos)"}
    assert out["split_rows"] == {"train": 96, "validation": 32}  # from the card's dataset_info
    assert out["files_read"] == 1 and out["files_total"] == 2 and out["rows_read"] == 48
    assert out["label_counts"] == {"neg": 24, "pos": 24}
    assert out["first_rows"][0][1] in ("neg", "pos")
    assert out["tokens"]["sampled"] == 48 and out["tokens"]["max"] >= out["tokens"]["p50"] > 2
    downloaded = [p for m, p in hub_server.requests if m == "GET" and ".parquet" in p]
    assert len(downloaded) == 1 and "reviews/train-00000" in downloaded[0]

    text = hubtune("data", "preview", "hf:hubtune-test/plain-data:test", "--rows", "2")
    assert text.returncode == 0, text.stderr
    assert "splits: train ?, test 40" in text.stdout or "splits: test 40, train ?" in \
        text.stdout
    assert "text column: review   label column: sentiment" in text.stdout

    missing = hubtune("data", "preview", f"hf:{SENTIMENT}:test")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "has no split 'test'; its splits are train, validation" in missing.stderr


@pytest.mark.slow
def test_train_on_a_hub_subset_records_the_dataset_and_its_commit(hub_server, tiny_bert,
                                                                  tmp_path):
    cfg = tmp_path / "hub-data.yaml"
    cfg.write_text(
        f"model: {{id: {tiny_bert}}}\n"
        f"data: {{train: 'hf:{SENTIMENT}', max_length: 32}}\n"
        "train: {epochs: 1, max_steps: 4, batch_size: 16, log_every: 2, eval_every: 4}\n")
    result = hubtune("train", str(cfg))
    assert result.returncode == 0, result.stderr
    run_id = int(result.stdout.splitlines()[0])
    shown = json.loads(hubtune("runs", "show", str(run_id), "--json").stdout)
    assert shown["status"] == "completed" and shown["dataset"] == f"hf:{SENTIMENT}"
    record = shown["summary"]["dataset"]
    assert record["sha"] == hub_server.datasets[SENTIMENT].sha
    assert (record["subset"], record["train_split"]) == ("reviews", "train")
    assert shown["summary"]["labels"] == ["neg", "pos"]
    assert "Validating on the validation split" in result.stdout
    # Review reads the same validation rows back from the cache, with their text.
    errors = hubtune("runs", "errors", str(run_id), "--limit", "100", "--json")
    assert errors.returncode == 0, errors.stderr
    report = json.loads(errors.stdout)
    assert report["examples"] == len(report["errors"]) > 0  # every validation row, with text
    assert all(e["label"] in ("neg", "pos") and e["input"].strip() for e in report["errors"])


def test_hub_download_a_dataset_then_train_data_offline(hub_server, tiny_bert, monkeypatch):
    result = hubtune("hub", "download", SENTIMENT, "--repo-type", "dataset", "--subset",
                     "short")
    assert result.returncode == 0, result.stderr
    from pathlib import Path

    folder = Path(result.stdout.strip())
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")) == [
        "short/train-00000-of-00001.parquet"]
    whole = hubtune("hub", "download", "hubtune-test/plain-data", "--repo-type", "dataset")
    assert whole.returncode == 0, whole.stderr
    assert len(list(Path(whole.stdout.strip()).rglob("*.parquet"))) == 2

    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    preview = hubtune("data", "preview", f"hf:{SENTIMENT}", "--subset", "short", "--json")
    assert preview.returncode == 0, preview.stderr
    assert json.loads(preview.stdout)["split_rows"] == {"train": 40}
