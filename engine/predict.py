"""Running a trained run's model on new input (the playground and `hubtune predict`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelError


@dataclass(frozen=True)
class Prediction:
    text: str
    label: str | None
    """The most likely label (classification), None for regression."""
    score: float
    """Its probability, or the predicted value for regression."""
    scores: dict[str, float]
    """Every label's probability (classification)."""


class Predictor:
    """A trained model loaded once, for many inputs."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from safetensors.torch import load_model
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        from engine.models import SequenceClassifier, quiet_transformers

        quiet_transformers()
        head_file = Path(model_dir) / "hubtune_head.json"
        if not head_file.is_file():
            raise ModelError(f"{model_dir} holds no trained hubtune model (no "
                             "hubtune_head.json); only completed runs have one.")
        head = json.loads(head_file.read_text(encoding="utf-8"))
        self.labels = head["labels"]
        self.task = head["task"]
        config = AutoConfig.from_pretrained(model_dir)
        backbone = AutoModel.from_config(config)
        if head["pooling"] != "pooler" and getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None
        problem = {"regression": "regression",
                   "multi-label-classification": "multi_label"}.get(self.task, "single_label")
        self.model = SequenceClassifier(
            backbone, 1 if problem == "regression" else len(self.labels),
            pooling=head["pooling"], dropout=0.0, problem_type=problem,
            custom_hidden=head.get("custom_hidden"),
        )
        load_model(self.model, str(Path(model_dir) / "model.safetensors"))
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.torch = torch

    def predict(self, texts: list[str]) -> list[Prediction]:
        torch = self.torch
        enc = self.tokenizer(texts, truncation=True, max_length=512, padding=True,
                             return_tensors="pt")
        with torch.no_grad():
            _, logits = self.model(input_ids=enc["input_ids"],
                                   attention_mask=enc["attention_mask"],
                                   token_type_ids=enc.get("token_type_ids"))
        out = []
        for text, row in zip(texts, logits, strict=True):
            if self.task == "regression":
                out.append(Prediction(text, None, float(row[0]), {}))
                continue
            probs = (torch.sigmoid(row) if self.task == "multi-label-classification"
                     else torch.softmax(row, -1)).tolist()
            scores = dict(zip(self.labels, probs, strict=True))
            best = max(scores, key=scores.get)
            out.append(Prediction(text, best, scores[best], scores))
        return out
