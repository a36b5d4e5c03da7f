"""A hubtune sequence head as a transformers model: copied as it is into an exported folder
(`hubtune export`), where `auto_map` in config.json points
`AutoModelForSequenceClassification` at it, so plain transformers loads the folder with
`trust_remote_code=True` and no hubtune installed.

It must import nothing but torch and transformers: it runs on machines without hubtune.
The layers and parameter names match `engine.modeling.loading.SequenceClassifier`
(`backbone.*`, `head.*`), so the run's safetensors load as they are.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class HubtuneForSequenceClassification(PreTrainedModel):
    """A pretrained encoder, the run's pooling (`hubtune_pooling`: mean, cls or pooler)
    and its linear or MLP head (`hubtune_head_hidden`)."""

    base_model_prefix = "hubtune"
    supports_gradient_checkpointing = False

    def __init__(self, config) -> None:
        super().__init__(config)
        self.pooling = getattr(config, "hubtune_pooling", "cls")
        self.backbone = AutoModel.from_config(config)
        if self.pooling != "pooler" and getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None  # the run trained without it; it has no weights
        hidden, labels = config.hidden_size, config.num_labels
        inner = getattr(config, "hubtune_head_hidden", None)
        dropout = getattr(config, "hubtune_dropout", 0.1)
        if inner:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, inner), nn.GELU(),
                                      nn.Dropout(dropout), nn.Linear(inner, labels))
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, labels))
        self.post_init()

    def _init_weights(self, module) -> None:
        if isinstance(module, nn.Linear) and any(module is m for m in self.head):
            nn.init.normal_(module.weight, std=getattr(self.config, "initializer_range", 0.02))
            nn.init.zeros_(module.bias)

    def pool(self, input_ids, attention_mask=None, token_type_ids=None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        out = self.backbone(**kwargs)
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return hidden[:, 0]

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None,
                return_dict=None, **kwargs) -> SequenceClassifierOutput:
        logits = self.head(self.pool(input_ids, attention_mask, token_type_ids))
        loss = None
        if labels is not None:
            kind = self.config.problem_type
            if kind == "regression":
                loss = nn.functional.mse_loss(logits.squeeze(-1), labels.float())
            elif kind == "multi_label_classification":
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
            else:
                loss = nn.functional.cross_entropy(logits, labels.long())
        return SequenceClassifierOutput(loss=loss, logits=logits)
