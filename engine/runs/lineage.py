"""Where a run comes from, and what it changed: its parent runs (a fork's, or the run
whose trained model it continues from, sequential fine-tuning) and the config keys that
differ from a parent's. Written once for `hubtune runs show` and the TUI's run panel.

Plain Python over recorded configs (dicts as `runs.config_json` holds them): no store,
no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

IGNORED_KEYS = frozenset({"base_dir", "name"})
"""Keys a diff leaves out: where the config file was, and the name (a fork's always
differs)."""


@dataclass(frozen=True)
class Parent:
    """A run another run comes from."""

    run_id: int
    kind: str
    """'fork' (its config copied and changed) or 'continues' (its trained model is the
    starting point: model.id run:ID)."""


@dataclass(frozen=True)
class ConfigChange:
    """One config key whose value differs between a parent and its child."""

    key: str
    """Dotted, e.g. train.learning_rate."""
    old: Any
    new: Any

    def to_json(self) -> dict:
        return {"key": self.key, "old": self.old, "new": self.new}


def parents(parent_id: int | None, config: dict) -> list[Parent]:
    """The runs a run comes from: its fork parent, then the run whose model it continues
    (both when a sequential run was forked)."""
    out = []
    if isinstance(parent_id, int):
        out.append(Parent(parent_id, "fork"))
    model = config.get("model") if isinstance(config, dict) else None
    model_id = model.get("id") if isinstance(model, dict) else None
    if isinstance(model_id, str) and model_id.startswith("run:"):
        ref = model_id.removeprefix("run:").strip()
        if ref.isdigit() and int(ref) != parent_id:
            out.append(Parent(int(ref), "continues"))
    return out


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted key -> value (an empty section stays one key)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def config_diff(old: dict, new: dict) -> list[ConfigChange]:
    """The keys whose values differ between two recorded configs, sorted by key; a key
    only one of them has shows None on the other side."""
    a, b = flatten(old), flatten(new)
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key in IGNORED_KEYS:
            continue
        x, y = a.get(key), b.get(key)
        if not _same(x, y):
            out.append(ConfigChange(key, x, y))
    return out


def _same(x: Any, y: Any) -> bool:
    """Equal as settings: 3 and 3.0 are (YAML and --set may write either)."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
    if numbers:
        return x == y
    return json.dumps(x, sort_keys=True, default=str) == json.dumps(y, sort_keys=True,
                                                                   default=str)


def show_value(value: Any) -> str:
    """A config value as a user writes it in YAML (null, true, 5e-05, [a, b])."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
