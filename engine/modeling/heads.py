"""Which heads fit a model, read from its config.json alone (no weights, no download).

A head fits when the transformers class its adapter builds accepts the
model type: the same tables transformers' Auto classes consult. hubtune's
own sequence head sits on the bare backbone, so it fits any text model that
is not an encoder-decoder; encoder-decoders are offered seq2seq only. Vision
models take the image head only.
"""

from __future__ import annotations

import json
from pathlib import Path

from engine.core.config import ModelSpec

SEQUENCE_HEADS = ("text-classification", "multi-label-classification", "regression",
                  "text-pair-classification", "feature-extraction")


def heads_for_config(config: dict) -> tuple[str, ...]:
    from transformers.models.auto import modeling_auto as auto


    if is_vision_config(config):
        return ("image-classification",)
    kind = config.get("model_type", "")
    if config.get("is_encoder_decoder"):
        # T5, BART, Marian: generation is what the pretraining built them for.
        return ("seq2seq",) if kind in auto.MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES else ()
    heads: list[str] = list(SEQUENCE_HEADS)
    tables = (
        ("token-classification", auto.MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES),
        ("question-answering", auto.MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES),
        ("masked-lm", auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES),
    )
    heads += [head for head, table in tables if kind in table]
    # Encoders such as BERT also register a causal LM class; it is not what they are for.
    if (kind in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
            and kind not in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES):
        heads.append("causal-lm")
    return tuple(heads)


def heads_from_config(config: dict) -> tuple[str, ...] | None:
    """The heads that fit a repo's config.json, or None when it cannot tell (no
    model_type: a timm or other library's config)."""

    if not config.get("model_type") and not is_vision_config(config):
        return None
    return heads_for_config(config)


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


def heads_for(spec: ModelSpec) -> tuple[str, ...] | None:
    """The heads that fit `spec`, or None when its config is not available locally."""
    if spec.id.startswith("torchvision:"):
        return ("image-classification",)
    config = local_config(spec)
    return heads_for_config(config) if config is not None else None


def is_vision_config(config: dict) -> bool:
    """Whether a config.json describes an image model (channels, no vocabulary)."""
    return "num_channels" in config and "vocab_size" not in config
