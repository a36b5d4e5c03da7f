"""Helpers the tests import by name (kept out of conftest to stay importable)."""

from __future__ import annotations

from pathlib import Path

from engine.core.config import RunConfig


def config_for(tmp_path: Path, model: Path, data: Path, *, epochs: float = 1,
               max_steps: int | None = None, **data_keys) -> RunConfig:
    data_cfg = {"train": str(data), "validation_split": 0.25, "max_length": 32}
    data_cfg.update(data_keys)
    return RunConfig.from_dict({
        "name": "t",
        "model": {"id": str(model)},
        "data": data_cfg,
        "train": {"epochs": epochs, "max_steps": max_steps, "batch_size": 16,
                  "learning_rate": 3e-3, "log_every": 1, "seed": 0},
        "base_dir": str(tmp_path),
    })
