"""Sequence heads: single- and multi-label classification, regression, sentence pairs.

The model is hubtune's own `SequenceClassifier` (backbone, the checkpoint's
pooling, a linear or MLP head), so the pooling a sentence-transformers repo
declares is honoured; see engine/modeling/loading.py.
"""

from __future__ import annotations

from pathlib import Path

from engine.core.config import RunConfig
from engine.tasks.base import Task, TaskData


class SequenceTask(Task):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        from engine.tasks.evaluate import label_kind

        self.regression = name == "regression"
        self.float_labels = label_kind(name) != "single_label"
        """Regression and multi-label targets are float tensors, the others class indices."""
        self.watch = {"regression": "loss", "multi-label-classification": "micro_f1"}.get(
            name, "accuracy")
        self.metrics = {"regression": ("loss", "mse", "mae"),
                        "multi-label-classification": ("loss", "accuracy", "micro_f1",
                                                       "macro_f1"),
                        "feature-extraction": None}.get(name, ("loss", "accuracy", "macro_f1"))
        self.pooling = "cls"

    def load_data(self, cfg: RunConfig, processor) -> TaskData:
        from engine.core.config import is_hub_data
        from engine.data.loading import load_text_classification

        if is_hub_data(cfg.data.train):
            from engine.tasks.hub_data import load_hub_sequence

            return load_hub_sequence(cfg, processor)
        text = load_text_classification(cfg, processor)
        return TaskData(text.train, text.validation, text.labels, text.majority_class,
                        warnings=text.warnings)

    def build(self, cfg: RunConfig, path: Path, data: TaskData):
        from engine.modeling.loading import build_model

        num_labels = 1 if self.regression else len(data.labels)
        built = build_model(cfg.model, cfg.head, num_labels, path=path)
        self.pooling = built.pooling
        return built.model

    def collator(self, examples, processor, cfg: RunConfig, *, train: bool):
        from engine.data.loading import SequenceCollator

        return SequenceCollator(examples, self.pad_id(processor), self.float_labels)

    def evaluate(self, model, data: TaskData, processor, cfg: RunConfig, device) -> dict:
        from engine.tasks.evaluate import run_evaluation

        return run_evaluation(model, data.validation, cfg, self.pad_id(processor),
                              len(data.labels), device)

    def baseline(self, data: TaskData) -> dict:
        from engine.tasks.evaluate import majority_baseline

        return majority_baseline(data.validation, data.majority_class, len(data.labels))

    def save(self, model, processor, data: TaskData, cfg: RunConfig, target: Path) -> Path:
        from engine.modeling.export import save_model

        return save_model(model, processor, data.labels, self.pooling, cfg, target)
