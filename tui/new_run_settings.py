"""Every run config key the new-run form's main fields leave out, for its Advanced
section: what kind of field each one wants, its default, and how its text becomes a
value and back.

Read off the config dataclasses themselves (engine.core.config), so a key added there
appears in the form without an edit here. No Textual and no torch.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from engine.core.config import PRECISIONS, SCHEDULERS, RunConfig

CHOICES: dict[str, tuple[str, ...]] = {
    "head.pooling": ("auto", "cls", "mean", "pooler"),
    "train.scheduler": SCHEDULERS,
    "train.precision": PRECISIONS,
    "data.bad_files": ("fail", "skip"),
}
"""Keys with a fixed set of values: offered as a choice, not typed."""
MAIN_KEYS = frozenset({
    "name", "base_dir", "model.id", "head.task", "freeze.policy", "freeze.n", "data.train",
    "data.encoding", "data.validation_split", "data.max_length", "data.text_column",
    "data.label_column", "train.epochs", "train.batch_size", "train.learning_rate",
    "train.seed"})
"""Keys the form's main fields hold (tui.new_run_form.FIELDS and SELECTS), and base_dir,
which is where the config was read."""
YAML_ONLY = frozenset({"train.watch"})
"""Sections the form leaves to the config file (rules of rules): kept as loaded, never
turned into fields."""
PROMOTED = ("freeze.patterns",)
"""Kept out of Advanced: shown beside the freezing choice it belongs to."""


@dataclass(frozen=True)
class Setting:
    """One config key as a form field."""

    key: str
    """Dotted, as `--set` takes it: train.weight_decay."""
    kind: str
    """text (a YAML scalar, as --set reads it), choice, list (comma-separated) or map
    (`name: value, ...`)."""
    default: str
    """The field's text in a new form ('' where the default is none or the section is
    off)."""
    choices: tuple[str, ...] = ()
    section: str | None = None
    """The optional section it belongs to (train.early_stopping): off while all of its
    fields are empty."""
    on_default: str = ""
    """In a section: its value once the section is on and it is left empty."""

    @property
    def fid(self) -> str:
        """The form field's id."""
        return "a-" + self.key.replace(".", "-")

    @property
    def hint(self) -> str:
        """The placeholder of an empty field: what leaving it empty means."""
        if self.section is not None:
            name = self.section.rsplit(".", 1)[-1].replace("_", " ")
            return f"{name} off" + (f"; {self.on_default} once on" if self.on_default else
                                    "; a value turns it on")
        if self.kind == "list":
            return "none; comma-separated"
        if self.kind == "map":
            return "none; e.g. head: 1e-3, block.0: 1e-5"
        return f"default: {self.default}" if self.default else "none"

    def parse(self, raw: str) -> Any:
        """The value typed text stands for (validated later, by the config)."""
        import yaml

        from engine.core.safe_yaml import YamlTooLarge, load_yaml  # typed text: bounded

        if self.kind == "list":
            return [part.strip() for part in raw.split(",") if part.strip()]
        if self.kind == "map":
            try:
                value = load_yaml("{" + raw + "}")
            except (yaml.YAMLError, YamlTooLarge):
                return raw  # the config names the key and what it wants
            return value
        if self.kind == "choice":
            return {"true": True, "false": False}.get(raw, raw)
        try:
            return load_yaml(raw)
        except (yaml.YAMLError, YamlTooLarge):
            return raw

    def show(self, value: Any) -> str:
        """A value as the field's text."""
        if self.kind == "list":
            return ", ".join(str(v) for v in value or [])
        if self.kind == "map":
            return ", ".join(f"{k}: {v!r}" if isinstance(v, float) else f"{k}: {v}"
                             for k, v in (value or {}).items())
        if value is None:
            return "" if not self.default else "null"
        if isinstance(value, bool):
            return str(value).lower()
        return str(value)


def _settings() -> dict[str, Setting]:
    out: dict[str, Setting] = {}
    for key, tp, default, section in _leaves(RunConfig, "", None):
        if key in MAIN_KEYS:
            continue
        base = _plain(tp)
        kind = ("choice" if base is bool or key in CHOICES else
                "list" if typing.get_origin(base) is list else
                "map" if typing.get_origin(base) is dict else "text")
        choices = ("true", "false") if base is bool else CHOICES.get(key, ())
        setting = Setting(key, kind, "", choices, section)
        shown = setting.show(default) if default is not None else ""
        out[key] = (dataclasses.replace(setting, on_default=shown) if section is not None
                    else dataclasses.replace(setting, default=shown))
    return out


def _leaves(cls: type, prefix: str, section: str | None):
    """(dotted key, type, default, optional section) of every leaf field of `cls`."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key, tp = prefix + f.name, hints[f.name]
        if key in YAML_ONLY:
            continue
        inner = _plain(tp)
        if dataclasses.is_dataclass(inner):
            optional = inner is not tp  # `X | None`: a section that may be off
            yield from _leaves(inner, key + ".", key if optional else section)
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:  # pragma: no cover - every config field has a default
            default = None
        yield key, tp, default, section


def _plain(tp: Any) -> Any:
    """`X | None` -> X; other types as they are."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        options = [t for t in typing.get_args(tp) if t is not type(None)]
        if len(options) == 1:
            return options[0]
    return tp


SETTINGS: dict[str, Setting] = _settings()
"""Dotted key -> Setting, for every key the main fields do not hold (PROMOTED too)."""
ADVANCED = tuple(k for k in SETTINGS if k not in PROMOTED)
"""The keys of the Advanced section, in the config's order."""
SECTIONS = tuple(dict.fromkeys(s.section for s in SETTINGS.values() if s.section))
"""Optional sections (head.custom, freeze.lora, train.early_stopping)."""
