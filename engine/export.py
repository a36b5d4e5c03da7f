"""Saving a trained model: safetensors weights, tokenizer, and the head's description."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import RunConfig


def save_model(model, tokenizer, labels, pooling: str, cfg: RunConfig, target: Path) -> Path:
    from safetensors.torch import save_model as save_safetensors

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    save_safetensors(model, str(target / "model.safetensors"))
    tokenizer.save_pretrained(target)
    model.backbone.config.save_pretrained(target)
    (target / "hubtune_head.json").write_text(
        json.dumps({"task": cfg.head.task, "labels": list(labels), "pooling": pooling,
                    "base_model": cfg.model.id,
                    "custom_hidden": cfg.head.custom.hidden if cfg.head.custom else None},
                   indent=2),
        encoding="utf-8",
    )
    return target
