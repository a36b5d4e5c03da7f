"""What a model's config.json says of it, read alone (no weights, no download): whether it
is an image model, and the local copy of it. Which heads fit it is the task adapters'
knowledge (engine.tasks.fit).
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.core.config import ModelSpec


def local_config(spec: ModelSpec) -> dict | None:
    """The model's config.json when it is on this machine; None otherwise (never downloads)."""
    ref = spec.id
    if ref.startswith(("pkg:", "run:")) or Path(ref).expanduser().is_dir():
        from engine.modeling.loading import resolve_model_path

        path = resolve_model_path(spec) / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(ref, "config.json", revision=spec.revision)
        if not isinstance(found, str):
            return None
        path = Path(found)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_vision_config(config: dict) -> bool:
    """Whether a config.json describes an image model (channels, no vocabulary)."""
    return "num_channels" in config and "vocab_size" not in config
