"""Review of a run's validation examples: each stored per-example result joined with its
input, re-read from the run's data with the same rules training used, and two runs'
results side by side.

The store's rows arrive as plain objects (`example`, `predicted`, `label`, `confidence`,
`loss`); this module never imports the store. What a validation example is, and how it
is read again, is the task adapter's (`Task.review_inputs`); a sequence head's review
stays torch-free, the other adapters' modules bring torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from engine.core.config import RunConfig, is_hub_data, parse_hub_data
from engine.core.errors import DataError, HubtuneError
from engine.tasks.predictions import PAIR_SEPARATOR, ExampleInput

__all__ = ["PAIR_SEPARATOR", "ExampleInput", "ReviewedExample", "Disagreement",
           "as_trained", "check_reviewable", "disagreements", "join_inputs",
           "same_validation", "validation_inputs"]


class Result(Protocol):
    example: int
    predicted: str
    label: str
    confidence: float | None
    loss: float


@dataclass(frozen=True)
class ReviewedExample:
    example: int
    row: int | None
    input: str
    label: str
    predicted: str
    confidence: float | None
    loss: float

    @property
    def correct(self) -> bool:
        return self.predicted == self.label

    def to_json(self) -> dict:
        return {**self.__dict__, "correct": self.correct}


def reviewed_tasks() -> tuple[str, ...]:
    """The heads whose evaluations record per-example results (every head that trains)."""
    from engine.tasks import task_for, task_names

    return tuple(n for n in task_names() if task_for(n).reviewed)


def check_reviewable(task: str) -> None:
    from engine.tasks import task_for

    if not task_for(task).reviewed:
        raise HubtuneError(f"Per-example review is not available for head.task {task} yet; "
                           f"it covers {', '.join(reviewed_tasks())}.")


def as_trained(run_id: int, cfg: RunConfig, summary: dict | None
               ) -> tuple[RunConfig, str | None]:
    """The config to re-read a run's validation data with, and a note when what the run
    read cannot be verified; a DataError when its files' content changed since.

    Hub data is read at the commit the run recorded, not where its branch is now.
    Files are checked against the fingerprint training recorded (engine.data.fingerprint);
    a run from before fingerprints (or one that never finished) gets the count and label
    checks of `join_inputs` only, with a note saying so.
    """
    import dataclasses

    from engine.data.fingerprint import changed_files

    record = summary.get("dataset") if isinstance(summary, dict) else None
    if is_hub_data(cfg.data.train):
        sha = record.get("sha") if isinstance(record, dict) else None
        other = cfg.data.validation is not None and (
            parse_hub_data(cfg.data.validation, "data.validation").repo
            != parse_hub_data(cfg.data.train).repo)
        if not isinstance(sha, str) or not sha or other:
            return cfg, (f"Run {run_id} recorded no commit of its {'validation ' * other}hub "
                         f"data; it is read at {cfg.data.revision} as it is now, and matched "
                         "to the run's results by count and labels only.")
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, revision=sha)), None
    changed = changed_files(cfg, record)
    if changed is None:
        return cfg, (f"Run {run_id} recorded no fingerprint of its data files (it trained "
                     "before hubtune kept one, or did not finish); its examples are matched "
                     "to its results by count and labels only.")
    if changed:
        shown = ", ".join(changed)
        raise DataError(f"Run {run_id}'s data files changed since it trained ({shown} no "
                        "longer holds what it read), so its examples cannot be shown beside "
                        "their inputs; restore the file, or `hubtune runs fork "
                        f"{run_id}` to train on the data as it is.")
    return cfg, None


def validation_inputs(cfg: RunConfig) -> list[ExampleInput]:
    """Every validation example of a run in the order its evaluations saw them, read by
    its task adapter (`Task.review_inputs`)."""
    from engine.tasks import task_for

    check_reviewable(cfg.head.task)
    return task_for(cfg.head.task).review_inputs(cfg)


def join_inputs(run_id: int, results: Iterable[Result], inputs: list[ExampleInput],
                examples: int) -> list[ReviewedExample]:
    """`results` with their inputs; refused when the data no longer matches the run's."""
    if len(inputs) != examples:
        raise DataError(f"The validation data of run {run_id} now has {len(inputs)} examples, "
                        f"not the {examples} it was evaluated on; its data files changed since, "
                        "so the examples cannot be matched to their inputs.")
    out = []
    for r in results:
        given = inputs[r.example] if 0 <= r.example < len(inputs) else None
        if given is None or not given.matches(r.label):
            now = "is gone" if given is None else f"is now labelled {given.label!r}"
            raise DataError(f"Validation example {r.example} of run {run_id} {now}, not "
                            f"{r.label!r} as when it trained; its data files changed since, "
                            "so the examples cannot be matched to their inputs.")
        out.append(ReviewedExample(r.example, given.row, given.text, r.label, r.predicted,
                                   r.confidence, r.loss))
    return out


@dataclass(frozen=True)
class Disagreement:
    """A validation example two runs predict differently."""

    example: int
    row: int | None
    input: str
    label: str
    predicted: tuple[str, str]
    confidence: tuple[float | None, float | None]
    hits: tuple[bool, bool] | None = None
    """Whether each run is right by its own row (a question's label is the gold answer
    nearest each run's answer); None: each prediction against `label`."""

    @property
    def right(self) -> str:
        """Which run is right: 'first', 'second' or 'neither'."""
        hits = self.hits or tuple(p == self.label for p in self.predicted)
        return "first" if hits[0] else "second" if hits[1] else "neither"

    def to_json(self, ids: tuple[int, int]) -> dict:
        return {"example": self.example, "row": self.row, "input": self.input,
                "label": self.label,
                "predicted": {str(i): p for i, p in zip(ids, self.predicted, strict=True)},
                "confidence": {str(i): c for i, c in zip(ids, self.confidence, strict=True)},
                "right": {"first": ids[0], "second": ids[1]}.get(self.right)}


def same_validation(cfg_a: RunConfig, cfg_b: RunConfig, ids: tuple[int, int]
                    ) -> list[ExampleInput]:
    """The validation inputs two runs share; refused unless they are the same examples in
    the same order with the same labels."""
    if cfg_a.head.task != cfg_b.head.task:
        raise HubtuneError(f"Runs {ids[0]} and {ids[1]} train different heads "
                           f"({cfg_a.head.task}, {cfg_b.head.task}); compare examples of runs "
                           "on the same task and data.")
    a, b = validation_inputs(cfg_a), validation_inputs(cfg_b)
    if [(x.text, x.label) for x in a] != [(x.text, x.label) for x in b]:
        raise HubtuneError(f"Runs {ids[0]} and {ids[1]} were validated on different data "
                           f"({len(a)} and {len(b)} examples, not the same rows); compare "
                           "examples only between runs with the same data and split seed.")
    return a


def disagreements(first: Mapping[int, Result], second: Mapping[int, Result],
                  inputs: list[ExampleInput]) -> list[Disagreement]:
    """Examples both runs recorded and predict differently: where exactly one is right
    first, then by example index."""
    out = []
    for index in sorted(first.keys() & second.keys()):
        a, b = first[index], second[index]
        if a.predicted == b.predicted or index >= len(inputs):
            continue
        given = inputs[index]
        out.append(Disagreement(index, given.row, given.text, a.label,
                                (a.predicted, b.predicted), (a.confidence, b.confidence),
                                (a.predicted == a.label, b.predicted == b.label)))
    return sorted(out, key=lambda d: (d.right == "neither", d.example))
