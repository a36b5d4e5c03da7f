"""Which heads fit a model: read from its config.json alone (no weights, no download),
or guessed from a hub model's pipeline tag before its config is read.

A head fits when the transformers class its adapter builds accepts the
model type: the same tables transformers' Auto classes consult. hubtune's
own sequence head sits on the bare backbone, so it fits any text model that
is not an encoder-decoder; encoder-decoders are offered seq2seq only. Vision
models take the image head only.

Torch-free: the new-run form and the hub screen ask it on their engine
thread, and `hubtune hub show` asks it with no model loaded.
"""

from __future__ import annotations

from engine.core.config import ModelSpec
from engine.modeling.heads import is_vision_config, local_config

SEQUENCE_HEADS = ("text-classification", "multi-label-classification", "regression",
                  "text-pair-classification", "feature-extraction")
IMAGE_HEADS = ("image-classification",)
PIPELINE_HEADS = {
    "text-classification": ["text-classification", "multi-label-classification", "regression",
                            "text-pair-classification", "custom"],
    "fill-mask": ["text-classification", "multi-label-classification", "regression",
                  "text-pair-classification", "token-classification", "question-answering",
                  "masked-lm", "feature-extraction", "custom"],
    "sentence-similarity": ["feature-extraction", "text-classification",
                            "multi-label-classification", "regression",
                            "text-pair-classification", "custom"],
    "feature-extraction": ["feature-extraction", "text-classification", "regression", "custom"],
    "token-classification": ["token-classification"],
    "question-answering": ["question-answering"],
    "text-generation": ["causal-lm", "text-classification"],
    "text2text-generation": ["seq2seq"],
    "translation": ["seq2seq"],
    "summarization": ["seq2seq"],
    "image-classification": ["image-classification", "feature-extraction"],
    "image-feature-extraction": ["image-classification", "feature-extraction"],
}
"""The heads a hub pipeline tag suggests, until the model's config.json says."""
UNTAGGED_HEADS = ("feature-extraction", "custom")


def guessed_heads(details) -> tuple[str, ...]:
    """A first guess at the heads that fit a hub model (engine.hub.client.ModelDetails),
    from its pipeline tag; `heads_from_config(details.config)` knows."""
    if details.library == "torchvision":
        return IMAGE_HEADS
    if details.library == "package":
        return ()
    return tuple(PIPELINE_HEADS.get(details.task or "", UNTAGGED_HEADS))


def heads_for_config(config: dict) -> tuple[str, ...]:
    from transformers.models.auto import modeling_auto as auto

    if is_vision_config(config):
        return IMAGE_HEADS
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


def heads_for(spec: ModelSpec) -> tuple[str, ...] | None:
    """The heads that fit `spec`, or None when its config is not available locally."""
    if spec.id.startswith("torchvision:"):
        return IMAGE_HEADS
    config = local_config(spec)
    return heads_for_config(config) if config is not None else None


MISFIT_HINTS = {
    "text-classification": "it needs an encoder such as BERT, RoBERTa or DistilBERT (an "
                           "encoder-decoder trains with head.task seq2seq)",
    "token-classification": "it needs an encoder such as BERT, RoBERTa or DistilBERT",
    "question-answering": "it needs an encoder such as BERT, RoBERTa or DistilBERT",
    "masked-lm": "it needs an encoder with a masked-LM head, such as BERT",
    "causal-lm": "it needs a decoder such as GPT-2 or a Llama-style model",
    "seq2seq": "it needs an encoder-decoder such as T5, BART or Marian",
}
"""What a head needs, for the message refusing a model it does not fit (the sequence
heads share the text-classification line)."""


def misfit_hint(name: str) -> str:
    return MISFIT_HINTS.get(name, MISFIT_HINTS["text-classification"])
