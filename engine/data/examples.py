"""Tokenised examples of the sequence heads, and stopping while data is prepared.

The lowest floor of data preparation: the example containers the training loop
reads (`SequenceExamples` as lists, or the Arrow-backed kind in
engine/data/hub/text.py), tokenising in chunks between which a stop request is
honoured (`stoppable`, `check_stop`), and nothing that reads a file. Both the local
file readers and the hub readers build on it. Imports neither torch nor textual.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from engine.data.text_cells import cut_texts


@dataclass
class SequenceExamples:
    """Tokenised examples of one split for the sequence heads (classification, pairs,
    multi-label, regression), as lists; padded into batches by `SequenceCollator`."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    labels: list[int] | list[float]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def lengths(self) -> list[int]:
        return [len(x) for x in self.input_ids]


@dataclass
class SequenceData:
    """A sequence-classification set: both splits' examples and what the labels are."""

    train: SequenceExamples
    validation: SequenceExamples
    labels: tuple[str, ...]
    """Label names in class-index order (empty for regression)."""
    majority_class: int | None
    """The most frequent training label: the baseline a classifier must beat."""
    warnings: tuple[str, ...] = ()
    """Label problems found while reading (left-out rows, look-alike labels)."""


# -- stopping while the data is prepared ----------------------------------------


class PreparationStopped(Exception):
    """The stop request arrived while data was read or tokenised; the run ends as stopped."""


_STOP: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "hubtune_stop", default=None)


@contextlib.contextmanager
def stoppable(stop: threading.Event | None) -> Iterator[None]:
    """Within this block `check_stop` (called between tokenising chunks) honours `stop`.

    A context variable, not a parameter: every task adapter's `load_data`
    tokenises through the same helpers without growing a `stop` argument.
    """
    token = _STOP.set(stop)
    try:
        yield
    finally:
        _STOP.reset(token)


def check_stop() -> None:
    stop = _STOP.get()
    if stop is not None and stop.is_set():
        raise PreparationStopped


TOKENISE_CHUNK = 4096
"""Rows tokenised per call: large enough for the fast tokenizer's own threads, small
enough that a stop request waits well under a second."""


def tokenise(tokenizer, texts: list | None, pairs: list | None = None, *,
             text_target: list | None = None, chunk: int = TOKENISE_CHUNK,
             **kwargs) -> dict[str, list]:
    """`tokenizer(texts, pairs, text_target=..., **kwargs)` in chunks of `chunk` rows,
    honouring a stop request between them; returns the list-valued fields (input_ids,
    labels, ...)."""
    rows = len(texts) if texts is not None else len(text_target or [])
    # A cell far longer than max_length tokens need is cut first (engine.data.text_cells):
    # the tokenizer builds every token before truncating.
    limit = kwargs.get("max_length") if kwargs.get("truncation") else None
    out: dict[str, list] = {}
    for start in range(0, max(1, rows), chunk):
        check_stop()
        cut = slice(start, start + chunk)
        if text_target is not None:
            kwargs["text_target"] = cut_texts(text_target[cut], limit)
        enc = tokenizer(cut_texts(texts[cut], limit) if texts is not None else None,
                        cut_texts(pairs[cut], limit) if pairs is not None else None, **kwargs)
        for key, value in enc.items():
            out.setdefault(key, []).extend(value)
    check_stop()
    return out


