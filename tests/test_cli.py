"""The `hubtune` command as a user runs it: real processes, real store, real worker."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

HUBTUNE = [sys.executable, "-m", "tui.cli"]
REPO = Path(__file__).resolve().parent.parent


from tests.support.cli_runner import hubtune  # noqa: E402 - in-process unless env is given


def test_train_records_a_completed_run_with_metrics(tiny_config):
    result = hubtune("train", str(tiny_config), "--set", "train.epochs=8")
    assert result.returncode == 0, result.stderr
    run_id = int(result.stdout.splitlines()[0])
    assert "Run " in result.stdout and "completed: accuracy" in result.stdout

    from store import RunStore

    store = RunStore()
    run = store.get_run(run_id)
    assert run.status == "completed"
    assert run.config["train"]["epochs"] == 8  # the override is what was recorded
    assert run.task == "text-classification" and run.dataset == "sentiment.csv"
    assert run.summary["final_accuracy"] >= 0.8
    assert run.summary["final_accuracy"] > run.summary["baseline_majority_accuracy"]
    assert run.env["packages"]["torch"]
    losses = store.series(run_id, "loss")
    assert len(losses) >= 10 and losses.steps == sorted(losses.steps)
    assert len(store.series(run_id, "val_accuracy")) == 8
    assert (Path(run.output_dir) / "worker.log").is_file()
    assert (Path(run.output_dir) / "model" / "model.safetensors").is_file()

    listed = hubtune("runs", "ls", "--json")
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == [run_id] and rows[0]["status"] == "completed"
    table = hubtune("runs", "ls")
    assert "tiny-sentiment" in table.stdout and "completed" in table.stdout
    shown = json.loads(hubtune("runs", "show", str(run_id), "--json").stdout)
    assert shown["summary"]["final_accuracy"] == run.summary["final_accuracy"]
    assert "val_accuracy" in shown["metrics"]

    # The playground path: the saved model reloads and applies the rule it learned.
    predicted = hubtune("predict", str(run_id), "the movie was great", "the food was awful",
                        "--json")
    assert predicted.returncode == 0, predicted.stderr
    out = json.loads(predicted.stdout)
    assert [p["label"] for p in out] == ["positive", "negative"]
    assert all(abs(sum(p["scores"].values()) - 1) < 1e-5 for p in out)


def test_detach_returns_at_once_and_follow_reattaches(tiny_config):
    result = hubtune("train", str(tiny_config), "--detach")
    assert result.returncode == 0, result.stderr
    run_id = int(result.stdout.strip())  # stdout holds only the id, for scripts
    # stderr says what started and how to follow it
    assert f"Run {run_id} (tiny-sentiment) started in the background" in result.stderr
    assert f"`hubtune runs follow {run_id}`" in result.stderr
    from store import RunStore

    # Reattach from another command: the events so far, progress, then the outcome.
    followed = hubtune("runs", "follow", str(run_id))
    assert followed.returncode == 0, followed.stderr
    assert RunStore().get_run(run_id).status == "completed"
    lines = followed.stdout.splitlines()
    assert lines[0].startswith("[info] ")  # from the first event on, not from now
    assert any(line.startswith("step ") for line in lines)
    # Each evaluation is printed with the step it was made at, never a later one's.
    store = RunStore()
    evals = {s for s in store.series(run_id, "val_accuracy").steps}
    for line in lines:
        if "val accuracy" in line:
            step = int(line.split()[1].split("/")[0])
            assert step in evals, line
    assert "[info] Run completed" in followed.stdout and f"Run {run_id} completed" in lines[-1]
    again = hubtune("runs", "follow", str(run_id))  # a finished run: its story, at once
    assert again.returncode == 0 and "[info] Run completed" in again.stdout
    missing = hubtune("runs", "follow", "999")
    assert missing.returncode != 0 and "999" in missing.stderr
    assert "Traceback" not in missing.stderr


def _bad(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda t, m, d: ["train", str(t / "missing.yaml")],
         "Error: Config file {t}/missing.yaml does not exist; check the path."),
        (lambda t, m, d: ["train", str(_bad(t, f"model: {{id: {m}}}\ndata: {{train: {d}}}\n"
                                                 "trian: {epochs: 1}\n"))],
         "Error: Unknown key trian; known keys here are name, model, head, freeze, data, "
         "train, base_dir. Did you mean train?"),
        (lambda t, m, d: ["train", str(_bad(t, f"model: {{id: {m}}}\ndata: {{train: {d}}}\n"
                                                 "train: {epochs: three}\n"))],
         "Error: train.epochs must be a number, got 'three'."),
        (lambda t, m, d: ["train", str(_bad(t, f"model: {{id: {m}}}\n"
                                                 "data: {train: nowhere.csv}\n"))],
         "Error: The data.train file {t}/nowhere.csv does not exist; check the path."),
        (lambda t, m, d: ["train", str(_bad(t, f"model: {{id: {m}}}\ndata: {{train: {d}}}\n")),
                          "--set", "train.batch_size=-4"],
         "Error: train.batch_size must be more than 0, got -4."),
        (lambda t, m, d: ["runs", "show", "4242"],
         "Error: There is no run 4242; `hubtune runs ls` lists the runs."),
    ],
)
def test_bad_input_is_one_sentence_and_nonzero_exit(tmp_path, tiny_bert, sentiment_csv,
                                                    make_args, message):
    result = hubtune(*make_args(tmp_path, tiny_bert, sentiment_csv))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == message.format(t=tmp_path)


def test_a_failing_run_reports_its_reason(tmp_path, sentiment_csv):
    cfg = _bad(tmp_path, f"model: {{id: {tmp_path}/no-such-model}}\n"
                         f"data: {{train: {sentiment_csv}}}\n")
    result = hubtune("train", str(cfg))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"Error: Model folder {tmp_path}/no-such-model does not exist." in result.stderr
    from store import RunStore

    run = RunStore().list_runs()[0]
    assert run.status == "failed" and "does not exist" in run.error


def test_runs_ls_on_an_empty_store_says_how_to_start():
    result = hubtune("runs", "ls")
    assert result.returncode == 0
    assert "No runs yet" in result.stdout


def test_export_metrics_csv(tmp_path):
    from store import RunStore

    store = RunStore()
    run_id = store.create_run({"a": 1})
    store.log_metrics(run_id, [(i, 0.0, "loss", float(i), 0.0) for i in range(5)])
    out = tmp_path / "m.csv"
    result = hubtune("runs", "export", str(run_id), "--metrics", str(out))
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0] == "step,epoch,name,value,time_unix" and len(lines) == 6


def test_sequential_fine_tuning_starts_from_an_earlier_run(tiny_config, tmp_path, tiny_bert):
    """Run B trains a token-classification head on run A's fine-tuned backbone."""
    from safetensors.torch import load_file

    from tests.support import task_data as td

    first = hubtune("train", str(tiny_config), "--set", "train.epochs=2")
    assert first.returncode == 0, first.stderr
    parent = int(first.stdout.splitlines()[0])
    ner = td.write_token_jsonl(tmp_path / "ner.jsonl")
    second = hubtune("train", str(tiny_config), "--set", f"model.id=run:{parent}",
                     "--set", "head.task=token-classification",
                     "--set", f"data.train={ner}", "--set", "train.epochs=1")
    assert second.returncode == 0, second.stderr
    child = int(second.stdout.splitlines()[0])
    from store import RunStore

    store = RunStore()
    run = store.get_run(child)
    assert run.status == "completed" and run.parent_id == parent
    assert run.config["model"]["id"] == f"run:{parent}"
    # The child began from the parent's fine-tuned weights, not the original model's.
    parent_weights = load_file(Path(store.get_run(parent).output_dir) / "model" / "backbone"
                               / "model.safetensors")
    note = [e.message for e in store.events(child) if "Loading" in e.message]
    assert note and f"run:{parent}" in note[0]
    original = load_file(tiny_bert / "model.safetensors")
    assert parent_weights.keys() == original.keys()  # transformers' own layout
    emb = "embeddings.word_embeddings.weight"
    assert not torch.equal(parent_weights[emb], original[emb])  # what run A learned

    before = len(json.loads(hubtune("runs", "ls", "--json").stdout))
    missing = hubtune("train", str(tiny_config), "--set", "model.id=run:999")
    assert missing.returncode == 1
    assert "model.id run:999 names no recorded run" in missing.stderr
    assert len(json.loads(hubtune("runs", "ls", "--json").stdout)) == before  # nothing recorded


def test_tag_and_note_a_run(store):
    run_id = store.create_run({"model": {"id": "m"}}, name="x")
    assert hubtune("runs", "tag", str(run_id), "baseline", "cpu").returncode == 0
    assert hubtune("runs", "note", str(run_id), "first try").returncode == 0
    run = store.get_run(run_id)
    assert run.tags == ("baseline", "cpu") and run.notes == "first try"
    found = json.loads(hubtune("runs", "ls", "--search", "first try", "--json").stdout)
    assert [r["id"] for r in found] == [run_id]
    missing = hubtune("runs", "tag", "999", "x")
    assert missing.returncode == 1 and "999" in missing.stderr


def test_data_preview_with_token_lengths(tiny_bert, sentiment_csv, tmp_path):
    from engine.modeling.lengths import token_lengths

    text = hubtune("data", "preview", str(sentiment_csv), "--model", str(tiny_bert),
                   "--max-length", "8")
    assert text.returncode == 0, text.stderr
    assert "160 rows; columns text, label" in text.stdout
    assert "labels: negative 80 (50%), positive 80 (50%)" in text.stdout
    expected = token_lengths(str(tiny_bert), sentiment_csv, ["text"])
    assert f"Suggested max length {expected.suggested}" in text.stdout
    out = json.loads(hubtune("data", "preview", str(sentiment_csv), "--model", str(tiny_bert),
                             "--json", "--max-length", "8").stdout)
    assert out["rows"] == 160 and out["label_counts"] == {"negative": 80, "positive": 80}
    assert out["tokens"]["p99"] == expected.p99
    assert out["tokens"]["cut_at_max_length"] == round(expected.cut_share(8), 5)
    bad = hubtune("data", "preview", str(sentiment_csv), "--model", str(tiny_bert),
                  "--text-column", "body")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "has no column 'body'" in bad.stderr


def test_data_clear_cache_removes_tokenised_data(hubtune_home):
    folder = hubtune_home / "cache" / "data"
    folder.mkdir(parents=True)
    (folder / "a.pkl").write_bytes(b"x" * 2000)
    tables = hubtune_home / "cache" / "datasets"  # local files' Arrow tables (and tokens)
    tables.mkdir(parents=True)
    (tables / "t.arrow").write_bytes(b"x" * 1000)
    (hubtune_home / "cache" / "audit").mkdir()
    (hubtune_home / "cache" / "audit" / "f.npy").write_bytes(b"x" * 1000)
    (hubtune_home / "keep.txt").write_text("not a cache")
    result = hubtune("data", "clear-cache")
    assert result.returncode == 0 and "Removed 3 cached data sets (4.0 kB)" in result.stdout
    assert not list(folder.iterdir()) and not list(tables.iterdir())
    assert (hubtune_home / "keep.txt").is_file()
