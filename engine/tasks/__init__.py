"""One adapter per family of heads: how its data is read, its model built,
its batches padded, its metrics computed, its model saved, and how a trained
run is used afterwards (prediction, review, export, the playground).

The training loop (engine/training/loop.py) and the modules that use a
trained run (engine/trained/) are written once against `Task`; each module
here fills it in for a family: sequence heads (classification, multi-label,
regression, sentence pairs, embeddings), token classification, extractive
QA, masked and causal LM, seq2seq, and image classification.

A new head is one adapter module plus one `Registration` below. Nothing else
in the engine names a task (tests/engine/test_task_branching.py checks it).
This module stays torch-free: the registrations are read by the TUI, and an
adapter's module (which may bring torch) is imported only by `task_for`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.tasks.base import Task

__all__ = ["REGISTRY", "Registration", "task_for", "task_names"]


@dataclass(frozen=True)
class Registration:
    """A `head.task` value and what is known of it before its adapter loads."""

    name: str
    """The `head.task` value (one of engine.core.config.TASKS)."""
    adapter: str
    """'module:Class' of its adapter, imported on first use."""
    prompt: str
    """What the playground asks for (its input's placeholder)."""
    prechecked: bool = False
    """Whether the CLI checks its local data files before it records a run
    (`Task.check_data`, torch-free: its adapter's module must not bring torch)."""
    metric: str = "accuracy"
    """The validation metric a run is judged by (its adapter's `watch`; checked)."""
    short: str | None = None
    """The name in a narrow table column; None: the name itself."""
    labelled: bool = True
    """Whether its data has a label column to pick."""
    images: bool = False
    """Whether its examples are images (no tokens to count)."""


_SEQUENCE = "engine.tasks.sequence:SequenceTask"

REGISTRY: dict[str, Registration] = {r.name: r for r in (
    Registration("feature-extraction", _SEQUENCE, "A text to embed", short="features",
                 labelled=False),
    Registration("text-classification", _SEQUENCE, "A text to classify", prechecked=True,
                 short="text-class"),
    Registration("multi-label-classification", _SEQUENCE, "A text to classify",
                 prechecked=True, metric="micro_f1", short="multi-label"),
    Registration("regression", _SEQUENCE, "A text to classify", prechecked=True,
                 metric="loss"),
    Registration("text-pair-classification", _SEQUENCE, "A text to classify",
                 prechecked=True, short="text-pair"),
    Registration("token-classification", "engine.tasks.token:TokenTask",
                 "A sentence; each word gets a tag", metric="f1", short="token-class"),
    Registration("question-answering", "engine.tasks.qa:QATask", "QUESTION ||| CONTEXT",
                 metric="f1", short="QA", labelled=False),
    Registration("masked-lm", "engine.tasks.lm:LanguageModelTask",
                 "A sentence with the mask token where a word is missing",
                 metric="perplexity", labelled=False),
    Registration("causal-lm", "engine.tasks.lm:LanguageModelTask",
                 "The start of a text to continue", metric="perplexity", labelled=False),
    Registration("seq2seq", "engine.tasks.seq2seq:Seq2SeqTask",
                 "A source text to translate or summarise", metric="chrf"),
    Registration("image-classification", "engine.tasks.image:ImageTask",
                 "The path of an image file", short="image-class", images=True),
)}
"""Every head hubtune trains, in the order the config lists them."""


def task_names() -> tuple[str, ...]:
    return tuple(REGISTRY)


def task_for(name: str) -> Task:
    """The adapter for a `head.task` value."""
    registration = REGISTRY.get(name)
    if registration is None:
        raise ValueError(f"no task adapter for {name!r}")  # config validation prevents this
    module, _, cls = registration.adapter.partition(":")
    return getattr(importlib.import_module(module), cls)(name, registration.metric)
