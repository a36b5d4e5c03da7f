"""Hub datasets for the task adapters: fetch the splits a config names, then read them.

Sits above engine/hub (which resolves and downloads) and engine/data (which
reads local files), joining the two: `data.train: hf:OWNER/NAME[:SPLIT]`
trains on that split (train by default); validation is `data.validation`
when given (another `hf:` split), else the dataset's own validation split,
else a seeded `data.validation_split` of the training split. The choice, the
subset and the commit the run read go into `TaskData.extra` for the run's
events and summary.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.core.config import RunConfig, is_hub_data, parse_hub_data
from engine.core.errors import DataError
from engine.data.hub.text import HubSplit
from engine.tasks.base import TaskData

STREAM_VALIDATION_ROWS = 10_000
"""The most validation rows a streamed run reads (evaluation passes over all of them)."""
DEFAULT_SUBSET = "default"


@dataclass(frozen=True)
class HubSplits:
    """The splits a config's `hf:` data names, fetched: what every task's reader reads."""

    train: HubSplit
    validation: HubSplit | None
    """None: split validation off the training rows (data.validation_split)."""
    record: dict
    """What the run records of the dataset: id, subset, revision, commit, splits."""
    heading: str
    """'Dataset hf:X, commit C: ' for the first note."""
    train_split: str
    val_name: str | None
    """hf:REPO:SPLIT of the validation split, when there is one."""

    def notes(self, cfg: RunConfig, train_rows: int, val_rows: int) -> list[str]:
        """The run's first notes: what it trains and validates on."""
        streamed = (f"streaming the first {streamed_rows(cfg):,} rows (train.max_steps x "
                    "batch) of " if cfg.data.streaming else "training on ")
        first = (f"{self.heading}{streamed}its {self.train_split} split"
                 + ("" if cfg.data.streaming else f" ({train_rows:,} rows)"))
        if self.val_name is None:
            return [first]
        repo, _, split = self.val_name.rpartition(":")
        return [first, f"Validating on the {split} split of {repo} ({val_rows:,} rows)"]


def hub_splits(cfg: RunConfig) -> HubSplits:
    """Fetch (or find in the cache) the training and validation splits `cfg.data` names."""
    from engine.data.hub.fetch import fetch_dataset

    spec = cfg.data
    ref = parse_hub_data(spec.train)
    train_split = ref.split or "train"
    val_ref = None
    if spec.validation is not None:
        if not is_hub_data(spec.validation):
            raise DataError("data.train is a hub dataset, so data.validation must be one too "
                            "(hf:OWNER/NAME:SPLIT), or left out to use the dataset's "
                            "validation split.")
        val_ref = parse_hub_data(spec.validation, "data.validation")
    same = val_ref is not None and val_ref.repo == ref.repo
    splits = (train_split, val_ref.split or "validation") if same else (train_split,)
    optional = ("validation",) if val_ref is None and train_split != "validation" else ()
    files = fetch_dataset(ref.repo, subset=spec.subset, revision=spec.revision,
                          splits=splits, optional=optional, download=not spec.streaming)
    train = _split(cfg, files, train_split, streamed_rows(cfg))
    validation, val_files, val_split = None, files, None
    if val_ref is not None:
        val_split = val_ref.split or "validation"
        if not same:
            val_files = fetch_dataset(val_ref.repo, subset=spec.subset,
                                      revision=spec.revision, splits=(val_split,),
                                      download=not spec.streaming)
    elif "validation" in files.splits and train_split != "validation":
        val_split = "validation"
    if val_split is not None:
        validation = _split(cfg, val_files, val_split, STREAM_VALIDATION_ROWS)
    val_name = f"hf:{val_files.repo}:{val_split}" if val_split is not None else None
    record = {"id": f"hf:{ref.repo}", "subset": files.subset, "revision": spec.revision,
              "sha": files.sha, "train_split": train_split,
              "validation": val_name or (f"validation_split {spec.validation_split:g} of "
                                         f"{train_split}")}
    subset = f", subset {files.subset}" if files.subset != DEFAULT_SUBSET else ""
    return HubSplits(train, validation, record,
                     f"Dataset hf:{ref.repo}{subset}, commit {files.sha[:12]}: ",
                     train_split, val_name)


def hub_task_data(cfg: RunConfig, splits: HubSplits, train, validation, notes: list[str],
                  **more) -> TaskData:
    """A hub dataset's TaskData: the examples, the run's record of the dataset and its
    notes (what it trains and validates on first, then the reader's)."""
    extra = {"dataset": splits.record,
             "notes": tuple(splits.notes(cfg, len(train), len(validation)) + notes),
             **more.pop("extra", {})}
    return TaskData(train, validation, extra=extra, **more)


def load_hub_sequence(cfg: RunConfig, tokenizer, kind: str = "single") -> TaskData:
    """`load_text_classification` for an `hf:` dataset (`kind`: its labels')."""
    from engine.data.hub.text import load_hub_text_classification

    splits = hub_splits(cfg)
    text, notes = load_hub_text_classification(cfg, tokenizer, splits.train,
                                               splits.validation, kind=kind)
    return hub_task_data(cfg, splits, text.train, text.validation, notes, labels=text.labels,
                         majority_class=text.majority_class, warnings=text.warnings)


def streamed_rows(cfg: RunConfig) -> int:
    """The training rows a streamed run takes: every optimizer step's batches, on every
    process (the config requires train.max_steps with data.streaming)."""
    import os

    t = cfg.train
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (t.max_steps or 1) * t.batch_size * t.grad_accumulation * max(1, world)


def _split(cfg: RunConfig, files, split: str, stream_rows: int):
    """A HubSplit of `files`: local files, or (data.streaming) repo paths fetched as read."""
    import hashlib

    from engine.data.hub.fetch import dataset_file

    if not cfg.data.streaming:
        return HubSplit(files.splits[split], files.where(split))
    name = hashlib.sha256(f"{files.repo}|{files.sha}|{files.subset}|{split}".encode()
                          ).hexdigest()[:24]
    return HubSplit(files.splits[split], files.where(split), stream_rows=stream_rows,
                    fetch=lambda path: dataset_file(files, path), stream_name=name)
