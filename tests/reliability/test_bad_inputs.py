"""The bad-input corpus (tests/reliability/bad_inputs/): each file gets its expected
one-sentence message from the engine API and from the CLI, and nothing stored is lost."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from engine.core.config import load_config
from engine.core.errors import HubtuneError
from engine.training.loop import train

CORPUS = Path(__file__).parent / "bad_inputs"
REPO = Path(__file__).resolve().parents[2]

DATA_CASES = {
    "malformed.csv": "malformed.csv cannot be parsed as CSV",
    "latin1.csv": "latin1.csv is not valid utf-8 text (byte 0xe9 on line 2); set "
                  "data.encoding to the file's encoding, e.g. latin-1.",
    "empty.csv": "empty.csv is empty.",
    "header_only.csv": "header_only.csv has no rows.",
    "missing_columns.csv": "missing_columns.csv has no column 'text' (data.text_column); its "
                           "columns are sentence, target.",
    "broken.jsonl": "broken.jsonl cannot be parsed as JSONL",
    "no_such_file.csv": "no_such_file.csv does not exist",
    "tiny_class.csv": "Label 'neutral' has only 1 example, too few to split off a validation "
                      "set; add examples or give data.validation.",
    "mixed_labels.csv": "mixed_labels.csv mixes numbers and names in its label column 'label' "
                        "(row 1 has '1', row 3 has 'positive'); use one kind of label for "
                        "every row.",
}
CONFIG_CASES = {
    "bad_value.yaml": "train.learning_rate must be more than 0, got -0.1; to keep weights "
                      "fixed, freeze them with freeze.policy instead.",
    "wrong_type.yaml": "train.epochs must be a number, got 'three'.",
    "unknown_key.yaml": "Unknown key trainning; known keys here are name, model, head, freeze, "
                        "data, train, base_dir. Did you mean train?",
    "not_a_mapping.yaml": "must be a mapping of sections (model, data, ...).",
    "broken_yaml.yaml": "is not valid YAML at line",
    "unknown_model.yaml": "Model hubtune-test/does-not-exist is not in the local cache and "
                          "hubtune is offline (HF_HUB_OFFLINE=1); unset it to download.",
}


def data_config(tmp_path: Path, model: Path, data: Path, **extra) -> Path:
    lines = [f"model: {{id: {model}}}", f"data: {{train: {data}, max_length: 16}}",
             "train: {epochs: 1, batch_size: 4}"]
    if extra.get("validation"):
        lines[1] = (f"data: {{train: {data}, validation: {extra['validation']}, "
                    "max_length: 16}")
    path = tmp_path / "cfg.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def corpus_config(tmp_path: Path, name: str, model: Path, data: Path) -> Path:
    text = (CORPUS / name).read_text().replace("MODEL", str(model)).replace("DATA", str(data))
    path = tmp_path / name
    path.write_text(text)
    return path


def cli(*args: str) -> subprocess.CompletedProcess:
    from tests.support.cli_runner import hubtune

    return hubtune(*args)  # in this process; the workers it starts are real processes


def engine_error(cfg_path: Path) -> str:
    with pytest.raises(HubtuneError) as err:
        train(load_config(cfg_path), lambda e: None, threading.Event())
    return str(err.value)


@pytest.mark.parametrize("name", sorted(DATA_CASES))
def test_bad_data_file(name, tmp_path, tiny_bert):
    message = engine_error(data_config(tmp_path, tiny_bert, CORPUS / name))
    assert DATA_CASES[name] in message and "\n" not in message


def test_bad_data_files_through_the_cli(tmp_path, tiny_bert, store):
    """Every data case through `hubtune train`, as a user runs it: refused in one sentence
    before a run is recorded or a worker started (the CLI reads and checks the file as
    the worker would), and nothing stored is lost."""
    kept = store.create_run({"keep": True}, name="earlier")
    for name in sorted(DATA_CASES):
        (tmp_path / name).mkdir()
        cfg = data_config(tmp_path / name, tiny_bert, CORPUS / name)
        result = cli("train", str(cfg))
        assert result.returncode == 1 and "Traceback" not in result.stderr, name
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("Error: ") and DATA_CASES[name] in last, name
    assert store.get_run(kept).name == "earlier"
    assert [r.id for r in store.list_runs()] == [kept]  # no failed run left behind


@pytest.mark.slow
def test_bad_data_the_cli_cannot_check_first_still_fails_in_the_worker(tmp_path, tiny_bert,
                                                                       store, monkeypatch):
    """Above the pre-check's size limit the worker reads the file and fails the run with
    the same sentence."""
    import tui.cli.train as train_cli

    monkeypatch.setattr(train_cli, "PRECHECK_MAX_BYTES", 0)
    cfg = data_config(tmp_path, tiny_bert, CORPUS / "missing_columns.csv")
    result = cli("train", str(cfg))
    assert result.returncode == 1
    assert DATA_CASES["missing_columns.csv"] in result.stderr.strip().splitlines()[-1]
    (run,) = store.list_runs()
    assert run.status == "failed" and DATA_CASES["missing_columns.csv"] in run.error


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_bad_config(name, tmp_path, tiny_bert, sentiment_csv):
    cfg = corpus_config(tmp_path, name, tiny_bert, sentiment_csv)
    if name == "unknown_model.yaml":
        message = engine_error(cfg)
    else:
        with pytest.raises(HubtuneError) as err:
            load_config(cfg)
        message = str(err.value)
    assert CONFIG_CASES[name] in message and "\n" not in message
    result = cli("train", str(cfg))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert CONFIG_CASES[name] in result.stderr.strip().splitlines()[-1]


def test_unseen_validation_label(tmp_path, tiny_bert):
    cfg = data_config(tmp_path, tiny_bert, CORPUS / "train_small.csv",
                      validation=CORPUS / "unseen_label.csv")
    expected = ("Validation label 'neutral' never appears in the training data (negative, "
                "positive); fix the label or add training examples of it.")
    assert engine_error(cfg) == expected
    assert cli("train", str(cfg)).stderr.strip().splitlines()[-1] == f"Error: {expected}"


def test_a_huge_line_is_truncated_not_fatal(tmp_path, tiny_bert):
    data = tmp_path / "huge_line.csv"
    data.write_text("text,label\n" + "good " * 400_000 + ",positive\n"
                    + "".join(f"{w},{lab}\n" for w, lab in [("bad", "negative"),
                              ("fine", "positive"), ("awful", "negative")] * 3))
    from transformers import AutoTokenizer

    from engine.data.loading import load_text_classification

    cfg = load_config(data_config(tmp_path, tiny_bert, data))
    loaded = load_text_classification(cfg, AutoTokenizer.from_pretrained(tiny_bert))
    assert max(loaded.train.lengths + loaded.validation.lengths) == 16


@pytest.mark.slow
def test_a_run_name_cannot_escape_the_run_folder(tmp_path, tiny_bert, sentiment_csv,
                                                 hubtune_home):
    cfg = data_config(tmp_path, tiny_bert, sentiment_csv)
    result = cli("train", str(cfg), "--set", "name=../../escaped", "--set", "train.max_steps=2")
    assert result.returncode == 0, result.stderr
    assert not (hubtune_home.parent / "escaped").exists()
    assert not list(hubtune_home.parent.parent.glob("escaped*"))
    from store import RunStore

    run = RunStore().list_runs()[0]
    assert run.name == "../../escaped"  # kept as a label; paths come from the run id only
    assert Path(run.output_dir).resolve().parent == (hubtune_home / "runs").resolve()


def image_config(tmp_path: Path, model: Path, policy: str) -> Path:
    path = tmp_path / f"images-{policy}.yaml"
    path.write_text(f"model: {{id: {model}}}\nhead: {{task: image-classification}}\n"
                    f"data: {{train: {CORPUS / 'images'}, bad_files: {policy}, "
                    "validation_split: 0.25}\ntrain: {epochs: 1, batch_size: 4}\n")
    return path


def test_a_non_image_in_an_image_folder_fails_with_its_path(tmp_path, tiny_vit):
    cfg = image_config(tmp_path, tiny_vit, "fail")
    expected = (f"{CORPUS / 'images' / 'cat' / 'notes.txt'} is not an image; remove it, or set "
                "data.bad_files: skip to leave such files out.")
    assert engine_error(cfg) == expected
    result = cli("train", str(cfg))
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == \
        f"Error: {expected}"


def test_a_corrupt_image_is_named(tmp_path):
    from engine.tasks.image import check_images

    bad = CORPUS / "images" / "dog" / "dog-corrupt.png"
    with pytest.raises(HubtuneError, match=r"dog-corrupt.png is a corrupt image; remove it"):
        check_images([bad], ["dog"], "fail")


def test_skip_leaves_bad_images_out_and_counts_them(tmp_path, tiny_vit):
    from engine.core.events import Note

    events = []
    outcome = train(load_config(image_config(tmp_path, tiny_vit, "skip")), events.append,
                    threading.Event())
    assert outcome.status == "completed"
    notes = [e.message for e in events if isinstance(e, Note)]
    assert "Left out 2 unreadable files (data.bad_files: skip)" in notes
    # 12 good images, a quarter of each class held out.
    assert any("8 training and 4 validation examples" in n for n in notes)
