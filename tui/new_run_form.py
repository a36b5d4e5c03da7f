"""The new-run form as plain data: its fields' values to a RunConfig and back.

No Textual and no torch here, so the form's rules are tested without Pilot
(tests/tui/test_new_run_form.py). The screen (tui/screens/new_run.py) copies
its widgets' values into a `NewRunForm`, asks it for the config or for the
message per field, and fills its widgets from one made `from_config`. Every
value is checked by the same config dataclasses the CLI uses. Every other
config key has a field in the Advanced section (tui/new_run_settings.py), so
nothing a loaded or forked config sets is hidden; the whole config also rides
along in `base`, so a key the form does not know survives too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.config import DEFAULT_TASK, FREEZE_POLICIES, TASKS, RunConfig
from engine.core.errors import HubtuneError
from engine.tasks import REGISTRY
from tui.new_run_settings import SECTIONS, SETTINGS

TASK_CHOICES = (DEFAULT_TASK, *(t for t in TASKS if t != DEFAULT_TASK))
"""The default first: a new form starts as the most common fine-tune."""
UNLABELLED = tuple(name for name, r in REGISTRY.items() if not r.labelled)
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
TEXT_FIELDS = ("name", "model", "train-file", "encoding")
"""Fields whose value is text as typed, never parsed as YAML: `pkg:` half typed is not a
mapping, nor a name `yes` a boolean."""
SELECTS = {
    "task": ("head.task", "Task"),
    "freeze": ("freeze.policy", "Freezing"),
    "text-col": ("data.text_column", "Text column"),
    "label-col": ("data.label_column", "Label column"),
}
"""Choices: field id -> (dotted config key, label)."""
REQUIRED = {
    "model": "Give a model: a hub id (org/name), a folder, pkg:module or run:ID.",
    "train-file": "Give a training file (CSV, TSV, JSONL, Parquet) or an image folder; "
                  "ctrl+o picks one.",
}
"""Fields a run cannot do without: while empty they show this hint, not an error."""
STAND_INS = {"model": "org/model", "train-file": "train.csv"}
"""What an empty required field is checked as, so the other fields are checked too."""


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
    """The loaded or forked config (less base_dir), kept so keys the form does not know
    survive the round trip into the new run."""
    advanced: dict[str, str] = field(default_factory=dict)
    """Text of the other settings' fields (tui.new_run_settings), by dotted key; a key
    not here is as `base` has it. An empty field means the key's default."""

    # -- to and from the widgets -------------------------------------------

    @classmethod
    def from_fields(cls, values: Mapping[str, str | None], base: dict | None = None,
                    advanced: Mapping[str, str] | None = None) -> NewRunForm:
        """A form from field id -> value (as the screen's widgets hold them), and the
        other settings' text by dotted key."""
        return cls(**{_attr(fid): value for fid, value in values.items()},
                   base=dict(base or {}), advanced=dict(advanced or {}))

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

    def advanced_values(self) -> dict[str, str]:
        """Dotted key -> the text each other setting's field shows: as typed, else as
        `base` has it, else its default."""
        out = {}
        for key, setting in SETTINGS.items():
            if key in self.advanced:
                out[key] = self.advanced[key]
            else:
                found, value = _get(self.base, key)
                out[key] = setting.show(value) if found else setting.default
        return out

    def changed(self) -> dict[str, str]:
        """The other settings whose fields differ from a new form's, by dotted key: what
        the Advanced section's title lists so a loaded value is never hidden."""
        return {k: v for k, v in self.advanced_values().items()
                if v.strip() != SETTINGS[k].default}

    def to_dict(self, base_dir: str | None = None) -> dict:
        """The form as a config mapping, numbers parsed as YAML scalars (like --set) and
        TEXT_FIELDS taken as typed; an empty field or an unpicked choice leaves `base`'s
        value (or the default)."""
        import yaml

        from engine.core.config import apply_overrides

        values = self.fields()
        sets = []
        texts = {}
        for fid, (key, _, _) in FIELDS.items():
            raw = (values[fid] or "").strip()
            if raw and fid in TEXT_FIELDS:
                texts[key] = raw
            elif raw:
                sets.append(f"{key}={raw}")
        for fid, (key, _) in SELECTS.items():
            value = values[fid]
            if isinstance(value, str):
                sets.append(f"{key}={yaml.safe_dump(value).strip()}")
        data = apply_overrides(self.base, sets)
        for key, raw in texts.items():
            _put(data, key, raw)
        _apply_advanced(data, self.advanced)
        data.setdefault("name", "")
        data["base_dir"] = base_dir if base_dir is not None else str(Path.cwd())
        return data

    def to_config(self, base_dir: str | None = None) -> RunConfig:
        """The run config; raises HubtuneError saying what is wrong."""
        return RunConfig.from_dict(self.to_dict(base_dir))

    def hints(self) -> dict[str, str]:
        """Field id -> hint, for each required field still empty (shown muted, not red:
        an untouched form is not a wrong one)."""
        values = self.fields()
        return {fid: hint for fid, hint in REQUIRED.items() if not (values[fid] or "").strip()}

    def check(self, base_dir: str | None = None) -> tuple[RunConfig | None, dict[str, str]]:
        """The config, or None and the message to show under the field it concerns
        (field id -> message; "general" when no field owns it). A required field left
        empty is no error (see `hints`), but there is no config until it is filled; the
        other fields are checked meanwhile."""
        hints = self.hints()
        form = dataclasses.replace(self, **{_attr(f): STAND_INS[f] for f in hints})
        try:
            cfg = form.to_config(base_dir)
        except HubtuneError as exc:
            fid = field_for(str(exc))
            return None, ({} if fid in hints else {fid: str(exc)})
        return (None, {}) if hints else (cfg, {})

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
        advanced = {**self.advanced, "freeze.patterns": SETTINGS["freeze.patterns"].show(
            patterns)}
        return dataclasses.replace(self, base=base, advanced=advanced,
                                   freeze="modules" if patterns else "full")

    def with_group_rate(self, group: str, rate: float | None) -> NewRunForm:
        """`group`'s own peak learning rate (None: back to the form's rules)."""
        base = dict(self.base)
        train = dict(base.get("train", {}))
        key = "train.group_learning_rates"
        typed = self.advanced.get(key)
        rates = SETTINGS[key].parse(typed) if typed is not None else dict(
            train.get("group_learning_rates") or {})
        rates = dict(rates) if isinstance(rates, dict) else {}
        if rate is None:
            rates.pop(group, None)
        else:
            rates[group] = rate
        train["group_learning_rates"] = rates
        base["train"] = train
        advanced = {**self.advanced, key: SETTINGS[key].show(rates)}
        return dataclasses.replace(self, base=base, advanced=advanced)


def plan_key(cfg: RunConfig) -> str:
    """What the layer plan of `cfg` depends on (model, task, freezing, data, rates):
    the plan is made again only when this changes."""
    t = cfg.train
    return repr((cfg.model, cfg.head, cfg.freeze, cfg.data, t.batch_size, t.precision,
                 t.learning_rate, t.head_learning_rate, t.layer_lr_decay,
                 t.group_learning_rates))


def field_for(message: str) -> str:
    """The id of the field a config error concerns ("general" when none does)."""
    keys = {key: fid for fid, (key, *_) in {**FIELDS, **SELECTS}.items()}
    keys.update({key: s.fid for key, s in SETTINGS.items()})
    for key in sorted(keys, key=len, reverse=True):  # train.early_stopping.x first
        if message.startswith((key + " ", key + "[", key + ".", f"Unknown key {key}")):
            return keys[key]
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


def _apply_advanced(data: dict, advanced: Mapping[str, str]) -> None:
    """Set each typed setting in `data`; an empty one goes back to its default, and an
    optional section whose fields are all empty is turned off."""
    for key, raw in advanced.items():
        setting = SETTINGS.get(key)
        if setting is None:
            continue
        if raw.strip():
            _put(data, key, setting.parse(raw.strip()))
        else:
            _drop(data, key)
    for section in SECTIONS:
        leaves = [k for k, s in SETTINGS.items() if s.section == section]
        if all(k in advanced and not advanced[k].strip() for k in leaves):
            _put(data, section, None)


def _get(data: dict, key: str) -> tuple[bool, object]:
    """(found, value) of a dotted key in nested mappings."""
    node: object = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _put(data: dict, key: str, value: object) -> None:
    *parents, last = key.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value


def _drop(data: dict, key: str) -> None:
    *parents, last = key.split(".")
    found, node = _get(data, ".".join(parents)) if parents else (True, data)
    if found and isinstance(node, dict):
        node.pop(last, None)


def _attr(fid: str) -> str:
    return fid.replace("-", "_")


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)
