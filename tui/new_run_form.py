"""The new-run form as plain data: its fields' values to a RunConfig and back.

No Textual and no torch here, so the form's rules are tested without Pilot
(tests/tui/test_new_run_form.py). The screen (tui/screens/new_run.py) copies
its widgets' values into a `NewRunForm`, asks it for the config or for the
message per field, and fills its widgets from one made `from_config`. Every
value is checked by the same config dataclasses the CLI uses; settings the
form has no field for ride along in `base`, so a loaded or forked config
keeps them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.config import FREEZE_POLICIES, TASKS, RunConfig
from engine.core.errors import HubtuneError

TASK_CHOICES = ("text-classification", *(t for t in TASKS if t != "text-classification"))
"""The default first: a new form starts as the most common fine-tune."""
UNLABELLED = ("masked-lm", "causal-lm", "feature-extraction", "question-answering")
"""Tasks whose data has no label column to pick."""

FIELDS = {
    "name": ("name", "Name", "my-run"),
    "model": ("model.id", "Model", "org/name, a folder, pkg:module or run:ID; → completes"),
    "train-file": ("data.train", "Training data", "data/train.csv"),
    "encoding": ("data.encoding", "Encoding", "utf-8"),
    "val-split": ("data.validation_split", "Validation split", "0.1"),
    "max-length": ("data.max_length", "Max tokens", "128"),
    "epochs": ("train.epochs", "Epochs", "3"),
    "batch": ("train.batch_size", "Batch size", "32"),
    "lr": ("train.learning_rate", "Learning rate", "5e-5"),
    "freeze-n": ("freeze.n", "Blocks to freeze", "0"),
    "seed": ("train.seed", "Seed", "42"),
}
"""Text fields: field id -> (dotted config key, label, placeholder)."""
SELECTS = {
    "task": ("head.task", "Task"),
    "freeze": ("freeze.policy", "Freezing"),
    "text-col": ("data.text_column", "Text column"),
    "label-col": ("data.label_column", "Label column"),
}
"""Choices: field id -> (dotted config key, label)."""


@dataclass
class NewRunForm:
    """What each field holds: text as typed, a choice or None (nothing picked yet)."""

    name: str = ""
    """Empty: the launch names the run after its data file."""
    model: str = ""
    """A hub id, a folder, pkg:module or run:ID."""
    train_file: str = ""
    encoding: str = "utf-8"
    val_split: str = "0.1"
    max_length: str = "128"
    epochs: str = "3"
    batch: str = "32"
    lr: str = "5e-5"
    freeze_n: str = "0"
    seed: str = "42"
    task: str | None = TASK_CHOICES[0]
    freeze: str | None = FREEZE_POLICIES[0]
    text_col: str | None = None
    label_col: str | None = None
    base: dict = field(default_factory=dict)
    """Config keys the form has no field for (from a loaded file or a forked run), kept
    so they survive the round trip into the new run."""

    # -- to and from the widgets -------------------------------------------

    @classmethod
    def from_fields(cls, values: Mapping[str, str | None], base: dict | None = None
                    ) -> NewRunForm:
        """A form from field id -> value (as the screen's widgets hold them)."""
        return cls(**{_attr(fid): value for fid, value in values.items()},
                   base=dict(base or {}))

    def fields(self) -> dict[str, str | None]:
        """Field id -> value, for every text field and choice."""
        return {fid: getattr(self, _attr(fid)) for fid in (*FIELDS, *SELECTS)}

    # -- to and from a config ------------------------------------------------

    @classmethod
    def from_config(cls, cfg: RunConfig) -> NewRunForm:
        """The form showing `cfg`; what it has no field for is kept in `base`."""
        d = cfg
        return cls(
            name=d.name, model=d.model.id, train_file=d.data.train, encoding=d.data.encoding,
            val_split=str(d.data.validation_split), max_length=str(d.data.max_length),
            epochs=_num(d.train.epochs), batch=str(d.train.batch_size),
            lr=f"{d.train.learning_rate:g}", freeze_n=str(d.freeze.n), seed=str(d.train.seed),
            task=d.head.task, freeze=d.freeze.policy, text_col=d.data.text_column,
            label_col=d.data.label_column,
            base={k: v for k, v in d.to_dict().items() if k != "base_dir"})

    def to_dict(self, base_dir: str | None = None) -> dict:
        """The form as a config mapping, values parsed as YAML scalars (like --set);
        an empty field or an unpicked choice leaves `base`'s value (or the default)."""
        import yaml

        from engine.core.config import apply_overrides

        values = self.fields()
        sets = []
        for fid, (key, _, _) in FIELDS.items():
            raw = (values[fid] or "").strip()
            if raw:
                sets.append(f"{key}={raw}")
        for fid, (key, _) in SELECTS.items():
            value = values[fid]
            if isinstance(value, str):
                sets.append(f"{key}={yaml.safe_dump(value).strip()}")
        data = apply_overrides(self.base, sets)
        data.setdefault("name", "")
        data["base_dir"] = base_dir if base_dir is not None else str(Path.cwd())
        return data

    def to_config(self, base_dir: str | None = None) -> RunConfig:
        """The run config; raises HubtuneError saying what is wrong."""
        return RunConfig.from_dict(self.to_dict(base_dir))

    def check(self, base_dir: str | None = None) -> tuple[RunConfig | None, dict[str, str]]:
        """The config, or None and the message to show under the field it concerns
        (field id -> message; "general" when no field owns it)."""
        try:
            return self.to_config(base_dir), {}
        except HubtuneError as exc:
            return None, {field_for(str(exc)): str(exc)}

    # -- what the layer plan changes -----------------------------------------

    def with_frozen(self, patterns: list[str]) -> NewRunForm:
        """Groups flipped in the layer tree: a `modules` policy freezing `patterns`, or
        full fine-tuning when nothing is frozen."""
        base = dict(self.base)
        if patterns:
            base["freeze"] = {**base.get("freeze", {}), "policy": "modules",
                              "patterns": patterns}
        else:
            base["freeze"] = {"policy": "full"}
        return dataclasses.replace(self, base=base, freeze="modules" if patterns else "full")

    def with_group_rate(self, group: str, rate: float | None) -> NewRunForm:
        """`group`'s own peak learning rate (None: back to the form's rules)."""
        base = dict(self.base)
        train = dict(base.get("train", {}))
        rates = dict(train.get("group_learning_rates") or {})
        if rate is None:
            rates.pop(group, None)
        else:
            rates[group] = rate
        train["group_learning_rates"] = rates
        base["train"] = train
        return dataclasses.replace(self, base=base)


def plan_key(cfg: RunConfig) -> str:
    """What the layer plan of `cfg` depends on (model, task, freezing, data, rates):
    the plan is made again only when this changes."""
    t = cfg.train
    return repr((cfg.model, cfg.head, cfg.freeze, cfg.data, t.batch_size, t.precision,
                 t.learning_rate, t.head_learning_rate, t.layer_lr_decay,
                 t.group_learning_rates))


def field_for(message: str) -> str:
    """The id of the field a config error concerns ("general" when none does)."""
    for fid, (key, *_) in {**FIELDS, **SELECTS}.items():
        if message.startswith(key + " ") or message.startswith(f"Unknown key {key}"):
            return fid
    if message.startswith("freeze."):
        return "freeze"
    return "general"


def load_form_config(path: str) -> RunConfig:
    """A YAML config to fill the form with, its training file made absolute (the form
    has no folder of its own to resolve it against); raises HubtuneError."""
    from engine.core.config import load_config

    cfg = load_config(path)
    if not Path(cfg.data.train).is_absolute() and not cfg.data.train.startswith("pkg:"):
        data = dataclasses.replace(cfg.data, train=str(cfg.resolve(cfg.data.train)))
        cfg = dataclasses.replace(cfg, data=data)
    return cfg


def config_yaml(cfg: RunConfig) -> str:
    """`cfg` as the YAML file Save writes (no base_dir: it is where the file is read)."""
    import yaml

    data = cfg.to_dict()
    data.pop("base_dir", None)
    return yaml.safe_dump(data, sort_keys=False)


def _attr(fid: str) -> str:
    return fid.replace("-", "_")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
