"""The new-run form's rules without Pilot: fields to a config and back, a message per
field, settings the form does not show kept, and no Textual or torch to do it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tui.new_run_form import (
    FIELDS,
    SELECTS,
    NewRunForm,
    config_yaml,
    field_for,
    load_form_config,
    plan_key,
)

REPO = Path(__file__).resolve().parents[2]


def _loaded(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("text,label\nfine,pos\nbad,neg\n")
    path = tmp_path / "run.yaml"
    path.write_text(
        "name: loaded\nmodel: {id: org/tiny}\nhead: {task: text-pair-classification}\n"
        "freeze: {policy: freeze_first_n, n: 2}\n"
        "data: {train: data/train.csv, text_column: text, text_pair_column: other,"
        " label_column: label, max_length: 64, validation_split: 0.25}\n"
        "train: {epochs: 2, batch_size: 8, learning_rate: 2.0e-4, log_every: 3,"
        " warmup_ratio: 0.2, seed: 7}\n")
    return path


def test_a_loaded_config_round_trips_through_the_form(tmp_path):
    cfg = load_form_config(str(_loaded(tmp_path)))
    # The training file is made absolute: the form has no folder of its own.
    assert cfg.data.train == str(tmp_path / "data" / "train.csv")

    form = NewRunForm.from_config(cfg)
    assert form.fields() == {
        "name": "loaded", "model": "org/tiny", "train-file": str(tmp_path / "data/train.csv"),
        "encoding": "utf-8", "val-split": "0.25", "max-length": "64", "epochs": "2",
        "batch": "8", "lr": "0.0002", "freeze-n": "2", "seed": "7",
        "task": "text-pair-classification", "freeze": "freeze_first_n", "text-col": "text",
        "label-col": "label"}
    assert set(form.fields()) == set(FIELDS) | set(SELECTS)
    back = form.to_config(base_dir=cfg.base_dir)
    assert back == cfg
    # What the widgets would hand back (field id -> value) makes the same config.
    again = NewRunForm.from_fields(form.fields(), form.base).to_config(base_dir=cfg.base_dir)
    assert again == cfg
    # Saved as YAML without base_dir, and loaded again to the same settings.
    saved = tmp_path / "saved.yaml"
    saved.write_text(config_yaml(back))
    assert "base_dir" not in saved.read_text()
    assert load_form_config(str(saved)).to_dict() == {**cfg.to_dict(),
                                                      "base_dir": str(tmp_path)}


def test_settings_the_form_does_not_show_are_kept(tmp_path):
    form = NewRunForm.from_config(load_form_config(str(_loaded(tmp_path))))
    form.epochs, form.lr, form.text_col = "5", "1e-3", None  # a column not picked yet
    cfg = form.to_config()
    assert (cfg.train.epochs, cfg.train.learning_rate) == (5, 1e-3)
    assert cfg.train.log_every == 3 and cfg.train.warmup_ratio == 0.2
    assert cfg.data.text_pair_column == "other"
    assert cfg.data.text_column == "text"  # from the loaded config, while none is picked
    assert cfg.base_dir == str(Path.cwd())
    # An emptied field falls back to the loaded value rather than to nothing.
    form.seed = "  "
    assert form.to_config().train.seed == 7


def test_a_bad_value_gives_a_message_under_its_field():
    form = NewRunForm(model="org/tiny", train_file="train.csv", lr="fast")
    cfg, errors = form.check()
    assert cfg is None
    assert errors == {"lr": "train.learning_rate must be a number, got 'fast'."}

    form.lr, form.batch = "1e-4", "0"
    cfg, errors = form.check()
    assert cfg is None and list(errors) == ["batch"]
    assert "train.batch_size must be more than 0" in errors["batch"]

    form.batch, form.model = "16", ""
    assert list(form.check()[1]) == ["model"]
    form.model = "org/tiny"
    cfg, errors = form.check()
    assert errors == {} and cfg.train.batch_size == 16 and cfg.train.learning_rate == 1e-4


def test_field_for_maps_config_errors_to_fields():
    assert field_for("data.max_length must be more than 0, got 0.") == "max-length"
    assert field_for("head.task must be one of text-classification, ...") == "task"
    assert field_for("Unknown key model.id.x.") == "model"
    assert field_for("freeze.patterns match no parameter.") == "freeze"
    assert field_for("Something else entirely.") == "general"


def test_layer_tree_changes_become_config(tmp_path):
    form = NewRunForm(model="org/tiny", train_file="train.csv")
    frozen = form.with_frozen(["backbone.embeddings.*"])
    assert frozen.freeze == "modules"
    cfg = frozen.to_config()
    assert cfg.freeze.policy == "modules" and cfg.freeze.patterns == ["backbone.embeddings.*"]
    assert form.base == {} and form.freeze == "full"  # the original is left as it was
    thawed = frozen.with_frozen([])
    assert thawed.freeze == "full" and thawed.to_config().freeze.patterns == []

    rated = form.with_group_rate("block.0", 7e-5)
    assert rated.to_config().train.group_learning_rates == {"block.0": 7e-5}
    assert rated.with_group_rate("block.0", None).to_config().train.group_learning_rates == {}
    # The plan is made again when a rate changes, not when the seed does.
    assert plan_key(rated.to_config()) != plan_key(form.to_config())
    form.seed = "1"
    assert plan_key(form.to_config()) == plan_key(NewRunForm(
        model="org/tiny", train_file="train.csv").to_config())


def test_the_form_model_imports_neither_textual_nor_torch():
    probe = ("import json, sys\nimport tui.new_run_form\n"
             "print(json.dumps(sorted(m for m in ('textual', 'torch', 'transformers')"
             " if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, timeout=120, cwd=REPO)
    assert json.loads(out.stdout) == []
