"""What using a trained run gives back, whatever its task: one input's `Prediction`, a
whole file's `FilePredictions`, and the validation examples (`ExampleInput`) that review
joins with a run's stored results. The adapters fill them in (engine/tasks/*_use.py);
engine/trained/ hands them on. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass, field

QA_SEPARATOR = "|||"
"""`hubtune predict ID "question ||| context"`: how a QA input is written on one line."""
PAIR_SEPARATOR = " ||| "
"""How review shows a text pair or a question with its context, on one line."""
PROBABILITY_COLUMNS_UP_TO = 20
"""Up to this many classes OUT gets a `p_<label>` column per class; above it only `score`."""


@dataclass(frozen=True)
class Prediction:
    text: str
    label: str | None
    """The most likely label, answer, generated text or fill; None for regression."""
    score: float
    """Its probability (or span score), or the predicted value for regression."""
    scores: dict[str, float] = field(default_factory=dict)
    """Every label's probability (classification) or the top fills (masked LM)."""
    shown_as: str = "labels"
    """How the playground shows it: 'labels' (the label, then each label's bar), 'value',
    'vector', 'text' (generated, lines kept), 'answer' or 'tags' ('word/TAG' pieces)."""


@dataclass
class FilePredictions:
    table: object
    """The input rows in their order, with `predicted`, `score` (and `p_<label>`) added."""
    metric: tuple[str, float, int] | None
    """(name, value, labelled rows) when the file has the run's label column."""
    notes: tuple[str, ...] = ()
    """What the user should know about how the file was read (an encoding guessed)."""


@dataclass(frozen=True)
class ExampleInput:
    """One validation example as the run read it."""

    text: str
    """The input: its text, 'text ||| pair', the source text, or an image path."""
    row: int | None
    """Its data row in the file it came from (1 = first row after any header); None for
    an image folder."""
    label: str
    """The true label as the per-example results write it; empty where nothing is
    checked (a language model's rows carry the tokens it was scored on)."""
    accepted: tuple[str, ...] = ()
    """Other labels a stored row may carry: each gold answer of a question."""
    cut: bool = False
    """Whether a stored label may be this one's first words only (a sentence's tags, where
    data.max_length cut the sentence)."""

    def matches(self, stored: str) -> bool:
        """Whether a stored row's label is this example's."""
        return (not self.label or stored == self.label or stored in self.accepted
                or (self.cut and self.label.startswith(stored + " ")))


def batches(order: list[int], size: int):
    """`order` in consecutive chunks of `size`."""
    for start in range(0, len(order), size):
        yield order[start:start + size]
