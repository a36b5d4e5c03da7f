"""A sentence-transformers folder that hubtune wrote, as one torch module for the ONNX
exporter: token ids in, the pooled sentence vector out.

sentence-transformers' own modules pass a dict of features from module to module, which
torch's exporters do not trace; this module rebuilds the same computation from the
folder's own files (modules.json, 1_Pooling/config.json, 2_Dense) so that the graph is
plain tensors. Only the modules hubtune writes (Transformer, then Pooling by mean or first
token, then an optional Dense with tanh) are accepted; anything else is refused in a
sentence rather than exported wrongly. Imports torch: load it inside a function.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from engine.core.errors import HubtuneError

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
DENSE = "sentence_transformers.models.Dense"
TANH = "torch.nn.modules.activation.Tanh"


class SentenceEmbedder(torch.nn.Module):
    """(input_ids, attention_mask[, token_type_ids]) -> the sentence vector, as
    sentence-transformers computes it for the folder."""

    def __init__(self, backbone, mean: bool, dense: torch.nn.Linear | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.mean = mean
        """Mean over the real tokens; else the first token's state."""
        self.dense = dense
        """BERT's pooler as sentence-transformers' Dense layer (tanh), or None."""

    @classmethod
    def from_folder(cls, folder: Path) -> SentenceEmbedder:
        from safetensors.torch import load_file
        from transformers import AutoModel

        folder = Path(folder)
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        kinds = [m.get("type") for m in modules]
        if kinds not in ([TRANSFORMER, POOLING], [TRANSFORMER, POOLING, DENSE]):
            raise HubtuneError(f"The sentence-transformers folder {folder} has modules hubtune "
                               "does not export to ONNX (it takes a transformer, a mean or "
                               "first-token pooling and an optional tanh Dense layer).")
        pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text())
        modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
        if modes not in ({"pooling_mode_mean_tokens"}, {"pooling_mode_cls_token"}):
            raise HubtuneError(f"The pooling of {folder} ({', '.join(sorted(modes))}) is not "
                               "one hubtune exports to ONNX (mean or first token).")
        dense = None
        if len(modules) == 3:
            path = folder / modules[2]["path"]
            spec = json.loads((path / "config.json").read_text())
            if spec.get("activation_function") != TANH:
                raise HubtuneError(f"The Dense layer of {folder} is not tanh; hubtune does not "
                                   "export it to ONNX.")
            dense = torch.nn.Linear(spec["in_features"], spec["out_features"],
                                    bias=spec.get("bias", True))
            weights = load_file(str(path / "model.safetensors"))
            dense.load_state_dict({k.removeprefix("linear."): v for k, v in weights.items()})
        backbone = AutoModel.from_pretrained(folder)  # a pooler it holds goes unused
        return cls(backbone, "pooling_mode_mean_tokens" in modes, dense).eval()

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        more = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        states = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               **more).last_hidden_state
        if self.mean:
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        else:
            pooled = states[:, 0]
        return pooled if self.dense is None else torch.tanh(self.dense(pooled))
