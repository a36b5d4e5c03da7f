"""Sequence heads: single- and multi-label classification, regression, sentence pairs,
and embeddings (feature-extraction: the backbone and its pooling, run once, no training).

The model is hubtune's own `SequenceClassifier` (backbone, the checkpoint's
pooling, a linear or MLP head), so the pooling a sentence-transformers repo
declares is honoured; see engine/modeling/loading.py. What differs between the
heads is their label kind (`label_kind`), which the data readers, the loss, the
metrics, prediction and export are handed. A trained run's use is in
engine/tasks/sequence_use.py. Torch-free at import: the CLI checks a run's files
through `check_data` before any model loads.
"""

from __future__ import annotations

from pathlib import Path

from engine.core.config import RunConfig
from engine.tasks.base import Task, TaskData

KINDS = {"regression": "regression", "multi-label-classification": "multi_label"}
"""Each head's label kind where it is not 'single_label' (class indices): the
`problem_type` of engine.modeling.loading.SequenceClassifier."""
DATA_KINDS = {"single_label": "single", "multi_label": "multi", "regression": "float"}
METRICS = {"regression": ("loss", "mse", "mae"),
           "multi-label-classification": ("loss", "accuracy", "micro_f1", "macro_f1"),
           "feature-extraction": None}
EMBEDDING = "feature-extraction"
"""The head whose run embeds its data with a backbone and its pooling (no classes, no training)."""
PAIRED = "text-pair-classification"
"""The head that reads a second text column (data.text_pair_column)."""


class SequenceTask(Task):
    auto_class = None  # hubtune's SequenceClassifier, built by load_trained
    pipeline_tag = "text-classification"

    def __init__(self, name: str, watch: str = "accuracy") -> None:
        super().__init__(name, watch)
        self.label_kind = KINDS.get(name, "single_label")
        """'single_label', 'multi_label' or 'regression': how targets are read, the loss,
        the predictions and their scores."""
        self.regression = self.label_kind == "regression"
        self.float_labels = self.label_kind != "single_label"
        """Regression and multi-label targets are float tensors, the others class indices."""
        self.embedding = name == EMBEDDING
        self.paired = name == PAIRED
        self.metrics = METRICS.get(name, ("loss", "accuracy", "macro_f1"))
        self.reviewed = self.trains = not self.embedding
        if self.embedding:
            self.pipeline_tag = EMBEDDING
        self.data_kind = DATA_KINDS[self.label_kind]
        """The same as the data readers name it (engine.data.hub.splits.label_map)."""
        self.pooling = "cls"

    def check_pair(self, cfg: RunConfig) -> None:
        """A sentence-pair head needs its second text column named."""
        if self.paired and not cfg.data.text_pair_column:
            from engine.core.errors import DataError

            raise DataError(f"head.task {self.name} needs data.text_pair_column.")

    def check_data(self, cfg: RunConfig) -> list[str]:
        """Every check `load_data` makes of local files, without a tokenizer or a model
        (torch-free); returns its warnings. The CLI runs it before it records a run."""
        from engine.data.loading import check_text_classification

        if self.embedding:
            return []
        self.check_pair(cfg)
        return check_text_classification(cfg, self.data_kind)

    def load_data(self, cfg: RunConfig, processor) -> TaskData:
        from engine.core.config import is_hub_data
        from engine.data.loading import load_text_classification

        self.check_pair(cfg)
        if is_hub_data(cfg.data.train):
            from engine.tasks.hub_data import load_hub_sequence

            return load_hub_sequence(cfg, processor, self.data_kind)
        text = load_text_classification(cfg, processor, self.data_kind)
        return TaskData(text.train, text.validation, text.labels, text.majority_class,
                        warnings=text.warnings)

    def build(self, cfg: RunConfig, path: Path, data: TaskData):
        from engine.modeling.loading import build_model

        num_labels = 1 if self.regression else len(data.labels)
        built = build_model(cfg.model, cfg.head, num_labels, path=path, kind=self.label_kind)
        self.pooling = built.pooling
        return built.model

    def collator(self, examples, processor, cfg: RunConfig, *, train: bool):
        from engine.data.loading import SequenceCollator

        return SequenceCollator(examples, self.pad_id(processor), self.float_labels)

    def evaluate(self, model, data: TaskData, processor, cfg: RunConfig, device) -> dict:
        from engine.tasks.evaluate import run_evaluation

        return run_evaluation(model, data.validation, cfg, self.pad_id(processor),
                              len(data.labels), device, self.label_kind)

    def baseline(self, data: TaskData) -> dict:
        from engine.tasks.evaluate import majority_baseline

        return majority_baseline(data.validation, data.majority_class, len(data.labels))

    def save(self, model, processor, data: TaskData, cfg: RunConfig, target: Path) -> Path:
        from engine.modeling.export import save_model

        return save_model(model, processor, data.labels, self.pooling, cfg, target)

    # -- using a trained run ------------------------------------------------------

    def load_trained(self, predictor) -> None:
        from engine.tasks.sequence_use import load_sequence_model

        load_sequence_model(predictor, self.label_kind)

    def predict(self, predictor, inputs):
        from engine.tasks.sequence_use import classify, embed

        if self.embedding:
            return embed(predictor, inputs)
        return classify(predictor, inputs, self.label_kind)

    def score_batches(self, predictor, texts, pairs=None, **how):
        """Probabilities (N x labels; the value for regression) for many texts."""
        from engine.tasks.sequence_use import score_batches

        return score_batches(predictor, self.label_kind, texts, pairs, **how)

    def readable(self, predictor, outputs):
        """(predicted label, its score) per row of `score_batches`' output."""
        from engine.tasks.sequence_use import readable

        return readable(outputs, predictor.labels, self.label_kind)

    def predict_file(self, predictor, cfg, path, column, batch_size, progress):
        if self.embedding:
            return super().predict_file(predictor, cfg, path, column, batch_size, progress)
        from engine.tasks.sequence_use import predict_text_file

        return predict_text_file(predictor, self.label_kind, cfg, path, column, batch_size,
                                 progress)

    def file_review_inputs(self, cfg: RunConfig):
        from engine.tasks.sequence_use import text_inputs

        self.check_pair(cfg)
        return text_inputs(cfg, self.label_kind, self.data_kind)

    def hub_review_inputs(self, cfg: RunConfig):
        from engine.tasks.sequence_use import hub_text_inputs

        self.check_pair(cfg)
        return hub_text_inputs(cfg, self.label_kind, self.data_kind)

    def export(self, model_dir: Path, target: Path, head: dict, config: dict) -> str | None:
        from engine.modeling.export import (
            convert_sequence,
            portable_sequence,
            sentence_transformers_folder,
        )

        if self.embedding:
            return sentence_transformers_folder(model_dir, target, head, config)
        return (convert_sequence(model_dir, target, head, self.label_kind)
                or portable_sequence(model_dir, target, head, self.label_kind))
