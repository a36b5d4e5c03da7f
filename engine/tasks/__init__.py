"""One adapter per family of heads: how its data is read, its model built,
its batches padded, its metrics computed and its model saved.

The training loop (engine/training/loop.py) is written once against `Task`; each
module here fills it in for a family: sequence heads (classification,
multi-label, regression, sentence pairs), token classification, extractive
QA, masked and causal LM, seq2seq, and image classification.
"""

from __future__ import annotations

from engine.tasks.base import Task, TaskData

__all__ = ["Task", "TaskData", "task_for"]


def task_for(name: str) -> Task:
    """The adapter for a `head.task` value."""
    if name in ("text-classification", "multi-label-classification", "regression",
                "text-pair-classification", "feature-extraction"):
        from engine.tasks.sequence import SequenceTask

        return SequenceTask(name)
    if name == "token-classification":
        from engine.tasks.token import TokenTask

        return TokenTask(name)
    if name == "question-answering":
        from engine.tasks.qa import QATask

        return QATask(name)
    if name in ("masked-lm", "causal-lm"):
        from engine.tasks.lm import LanguageModelTask

        return LanguageModelTask(name)
    if name == "seq2seq":
        from engine.tasks.seq2seq import Seq2SeqTask

        return Seq2SeqTask(name)
    if name == "image-classification":
        from engine.tasks.image import ImageTask

        return ImageTask(name)
    raise ValueError(f"no task adapter for {name!r}")  # config validation prevents this
