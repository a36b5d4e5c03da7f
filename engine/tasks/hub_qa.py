"""`hf:` datasets for extractive question answering (SQuAD-shaped: `question`,
`context` and `answers` of `text` and `answer_start` lists, or `answer_text` and
`answer_start` columns).

The splits are read and checked as Arrow, then each becomes the table the file
reader gives (question, context, answers as (text, start) pairs) and is cut into
windows by the same code as files: windows need each example's context and
character offsets in evaluation, so QA holds its rows as Python objects, like
files do, rather than as Arrow columns.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.config import RunConfig
from engine.core.errors import DataError
from engine.data.hub.rows import OpenSplits, open_splits
from engine.tasks.base import TaskData
from engine.tasks.hub_data import HubSplits, hub_splits, hub_task_data


@dataclass
class HubQA:
    """Both splits as the file reader's tables, and what a hub TaskData records."""

    splits: HubSplits
    read: OpenSplits
    train: object
    """The training rows: a DataFrame of question, context, answers [(text, start)]."""
    validation: object

    def task_data(self, cfg: RunConfig, train, validation, extra: dict) -> TaskData:
        return hub_task_data(cfg, self.splits, train, validation, self.read.notes,
                             extra=extra)


def read_hub_qa(cfg: RunConfig) -> HubQA:
    """The splits `cfg.data` names, read as Arrow and checked, then as tables."""
    splits = hub_splits(cfg)
    read = open_splits(cfg, splits.train, splits.validation, lambda ds, where: ({}, []),
                       _check_columns)
    return HubQA(splits, read, _frame(read.train, read.train_where),
                 _frame(read.validation, read.val_where))


def _check_columns(ds, where: str, columns: dict):
    present = list(ds.column_names)
    for column in ("question", "context"):
        if column not in present:
            raise DataError(f"{where} has no column {column!r}; question answering needs "
                            f"question, context and answers (its columns are "
                            f"{', '.join(present)}).")
    if "answers" not in present and not {"answer_text", "answer_start"} <= set(present):
        raise DataError(f"{where} has no answers column (answers, or answer_text and "
                        f"answer_start); its columns are {', '.join(present)}.")
    return ds, []


def _frame(ds, where: str):
    """A split as the file reader's table: question, context, answers [(text, start)]."""
    import pandas as pd

    names = ["question", "context"] + (["answers"] if "answers" in ds.column_names
                                       else ["answer_text", "answer_start"])
    rows = ds.with_format("arrow")[:].select(names).to_pydict()
    answers = []
    for number in range(len(rows["question"])):
        try:
            if "answers" in rows:
                cell = rows["answers"][number]
                texts, starts = list(cell["text"]), [int(s) for s in cell["answer_start"]]
            else:
                texts = [rows["answer_text"][number]]
                starts = [int(rows["answer_start"][number])]
            if not all(isinstance(t, str) for t in texts):
                raise TypeError("not text")
            answers.append(list(zip(texts, starts, strict=True)))
        except (TypeError, KeyError, ValueError):
            raise DataError(f"{where} row {number + 1}: answers must look like {{\"text\": "
                            "[...], \"answer_start\": [...]}} with one start per text."
                            ) from None
    return pd.DataFrame({"question": [q or "" for q in rows["question"]],
                         "context": [c or "" for c in rows["context"]], "answers": answers})
