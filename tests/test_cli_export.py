"""`hubtune export`: a folder transformers reloads offline, predicting as the run measured."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from engine.core.outputs import OutputError

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SECRET = "hf_NeverWriteThisTokenAnywhere0123456789"


from tests.support.cli_runner import hubtune  # noqa: E402 - in-process unless env is given


def test_export_reloads_with_auto_classes_and_matches_the_run(tiny_config, tmp_path,
                                                              hubtune_home, hub_server):
    hub_server.uploads.write_token = SECRET  # the loopback hub lets this token push
    env = {**os.environ, "HF_TOKEN": SECRET, "HUGGING_FACE_HUB_TOKEN": SECRET,
           "HF_HUB_DISABLE_XET": "1"}
    trained = hubtune("train", str(tiny_config), "--set", "train.epochs=6", env=env)
    assert trained.returncode == 0, trained.stderr
    run_id = trained.stdout.splitlines()[0]
    out = tmp_path / "exported"
    result = hubtune("export", run_id, str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert "AutoModelForSequenceClassification" in result.stdout

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from engine.core.config import load_config
    from engine.data.loading import load_text_classification
    from store import RunStore

    run = RunStore().get_run(int(run_id))
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    # The same validation split the run used (seeded), scored by the reloaded model.
    cfg = load_config(tiny_config, ["train.epochs=6"])
    val = load_text_classification(cfg, tokenizer).validation
    correct = 0
    with torch.no_grad():
        for ids, label in zip(val.input_ids, val.labels, strict=True):
            logits = model(input_ids=torch.tensor([ids])).logits
            correct += int(logits.argmax(-1)) == label
    assert correct / len(val) == run.summary["best_accuracy"]

    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n")
    assert "pipeline_tag: text-classification" in card and "| accuracy |" in card
    assert "AutoModelForSequenceClassification.from_pretrained" in card

    # Pushed to the (loopback) hub: created private, every file up, the card with it.
    pushed = hubtune("export", run_id, str(tmp_path / "pushed"), "--push", "alice/sentiment",
                     env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert f"Pushed to {hub_server.url}/alice/sentiment" in pushed.stdout
    repo = hub_server.repos["alice/sentiment"]
    assert sorted(repo.files()) == sorted(p.relative_to(out).as_posix()
                                          for p in out.rglob("*") if p.is_file())
    assert (repo.folder / "README.md").read_text() == card

    # The token the processes had in their environment is written nowhere.
    shown = hubtune("runs", "show", run_id, "--json", env=env).stdout
    places = [card, shown, (hubtune_home / "hubtune.db").read_bytes().decode("latin-1")]
    places += [p.read_text(errors="replace") for p in Path(run.output_dir).rglob("*")
               if p.is_file() and p.suffix in (".log", ".json", ".yaml", ".md", ".txt")]
    places += [p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()
               and p.suffix != ".safetensors"]
    places += [pushed.stdout, pushed.stderr]
    places += [p.read_text(errors="replace") for p in repo.folder.rglob("*") if p.is_file()
               and p.suffix != ".safetensors"]
    assert not any(SECRET in text for text in places)


def test_export_of_an_unfinished_run_is_refused(store, tmp_path):
    run_id = store.create_run({"model": {"id": "m"}}, name="x")
    result = hubtune("export", str(run_id), str(tmp_path / "o"))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"Error: Run {run_id} is queued and has no final model; "
                                     "only a completed run can be exported.")


def test_export_of_a_task_model_copies_it_with_a_card(tmp_path):
    import threading

    from engine.core.config import RunConfig
    from engine.trained.export import export_model
    from engine.training.loop import train
    from tests.support import task_data as td
    from tests.support.tiny_models import make_tiny_family

    model = make_tiny_family("bert", tmp_path / "bert")
    cfg = RunConfig.from_dict({
        "name": "ner", "model": {"id": str(model)}, "head": {"task": "token-classification"},
        "data": {"train": str(td.write_token_jsonl(tmp_path / "ner.jsonl"))},
        "train": {"epochs": 1, "batch_size": 8}})
    outcome = train(cfg, lambda e: None, threading.Event(), out_dir=tmp_path / "run")
    folder, loader = export_model(tmp_path / "run" / "model", tmp_path / "exp",
                                  config=cfg.to_dict(), summary=outcome.summary, run_name="ner")
    assert loader == "AutoModelForTokenClassification"
    from transformers import AutoModelForTokenClassification

    assert AutoModelForTokenClassification.from_pretrained(folder).config.num_labels == 4
    assert "pipeline_tag: token-classification" in (folder / "README.md").read_text()
    assert json.loads((folder / "hubtune_head.json").read_text())["task"] == \
        "token-classification"

    # A second export never writes over the first unasked, nor anywhere in HUBTUNE_HOME.
    (folder / "notes.txt").write_text("mine")
    weights = (folder / "model.safetensors").read_bytes()
    with pytest.raises(OutputError, match="is not empty; give a new or empty folder, or pass "
                                          "--force"):
        export_model(tmp_path / "run" / "model", folder, config=cfg.to_dict(),
                     summary=outcome.summary, run_name="ner")
    (folder / "model.safetensors").write_bytes(b"stale")
    export_model(tmp_path / "run" / "model", folder, config=cfg.to_dict(),
                 summary=outcome.summary, run_name="ner", force=True)
    assert (folder / "model.safetensors").read_bytes() == weights  # replaced whole
    assert (folder / "notes.txt").read_text() == "mine"  # other files left alone
    for inside in (tmp_path / "run", tmp_path / "run" / "model", tmp_path / "run" / "new"):
        with pytest.raises(OutputError, match="inside hubtune's data folder"):
            export_model(tmp_path / "run" / "model", inside, config=cfg.to_dict(),
                         summary=outcome.summary, run_name="ner", force=True,
                         protected=tmp_path / "run")
    with pytest.raises(OutputError, match="is a file; give a new or empty folder"):
        export_model(tmp_path / "run" / "model", folder / "notes.txt", config=cfg.to_dict(),
                     summary=outcome.summary, run_name="ner")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
