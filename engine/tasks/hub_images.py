"""`hf:` datasets for image classification: an `Image` feature and a label column.

The images stay encoded in the split's Arrow table (memory-mapped where it is on
disk); `HubImageExamples` hands `ImageCollator` one decoded image at a time, in
a data worker process when the run has them. Every image is opened once before
training, as for files: a corrupt one fails the load with its row, or with
`data.bad_files: skip` is left out and counted. Label names come from a
`ClassLabel` feature, else the distinct values (as for the sequence heads).
"""

from __future__ import annotations

from engine.core.config import RunConfig
from engine.core.errors import DataError
from engine.data.hub.rows import open_splits
from engine.data.hub.splits import drop_unlabelled, encode_labels, label_map, pick_hub_column
from engine.data.loading import check_stop
from engine.tasks.base import TaskData
from engine.tasks.hub_data import hub_splits, hub_task_data

IMAGE_NAMES = ("image", "img", "picture", "path", "file", "filename")
LABEL_NAMES = ("labels", "class", "fine_label", "category")
"""Conventional image and label columns, read while data.text_column / label_column are
at their defaults."""
VERIFY_ROWS = 256
"""Images verified per Arrow batch: their bytes are all that is held at once."""


class HubImageExamples:
    """One split's images, still encoded in an Arrow table, and their class indices."""

    def __init__(self, ds, column: str, labels: list[int]) -> None:
        self.ds, self.column, self.labels = ds, column, labels
        self.rows = ds.with_format("arrow")
        """The same rows, indexed as one-row Arrow tables (no decoding by `datasets`)."""
        self.lengths = [1] * len(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def open(self, i: int):
        """Example `i`'s image, decoded from its bytes (a context manager)."""
        import io

        from PIL import Image

        cell = self.rows[i].column(self.column)[0].as_py()
        return Image.open(io.BytesIO(cell["bytes"]))


def load_hub_images(cfg: RunConfig) -> TaskData:
    """Images and labels of a hub dataset's splits, each image checked to decode."""
    spec = cfg.data
    splits = hub_splits(cfg)
    lmaps: dict = {}
    skipped = 0

    def pick(ds, where):
        import datasets

        image, note = pick_hub_column(ds, where, spec.text_column, "text_column", "text",
                                      IMAGE_NAMES)
        label, other = pick_hub_column(ds, where, spec.label_column, "label_column", "label",
                                       LABEL_NAMES)
        if not isinstance(ds.features[image], datasets.Image):
            raise DataError(f"{where} holds {ds.features[image]!r} values, not images, in its "
                            f"column {image!r} (data.text_column); set data.text_column to "
                            "the column of images.")
        lmaps["train"] = label_map(ds, where, label, "single")
        lmaps["column"] = label
        return {"text_column": image, "label_column": label}, [n for n in (note, other) if n]

    def check(ds, where, columns):
        nonlocal skipped
        ds, warning = drop_unlabelled(ds, where, columns["label_column"], lmaps["train"])
        ds, bad = _verified(ds, where, columns["text_column"], spec.bad_files)
        skipped += bad
        return ds, [warning] if warning else []

    def split(ds, fraction: float, seed: int):  # by class, as for files
        from engine.data.hub.text import split_off

        return split_off(ds, lmaps["column"], lmaps["train"], fraction, seed)

    read = open_splits(cfg, splits.train, splits.validation, pick, check, split)
    image, label = read.columns["text_column"], read.columns["label_column"]
    lmap = lmaps["train"]
    examples = []
    for ds, where in ((read.train, read.train_where), (read.validation, read.val_where)):
        values = ds.with_format("arrow")[label].to_pylist()
        examples.append(HubImageExamples(ds, image, encode_labels(values, lmap, where, label)))
    train, validation = examples
    counts = [0] * len(lmap.names)
    for label in train.labels:
        counts[label] += 1
    majority = max(range(len(counts)), key=lambda i: (counts[i], -i))
    return hub_task_data(cfg, splits, train, validation, read.notes, labels=lmap.names,
                         majority_class=majority, warnings=tuple(read.warnings),
                         extra={"skipped_files": skipped})


def _verified(ds, where: str, column: str, policy: str) -> tuple[object, int]:
    """`ds` with every image checked to decode; a bad one fails (its row named) or, with
    data.bad_files: skip, is left out and counted."""
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    arrow = ds.with_format("arrow")
    bad = []
    for start in range(0, len(ds), VERIFY_ROWS):
        check_stop()
        cells = arrow[start:start + VERIFY_ROWS].column(column).to_pylist()
        for offset, cell in enumerate(cells):
            data = (cell or {}).get("bytes")
            try:
                if data is None:
                    raise ValueError("no bytes")
                with Image.open(io.BytesIO(data)) as img:
                    img.verify()
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
                row = start + offset
                if policy == "fail":
                    raise DataError(f"{where} row {row + 1} holds no image hubtune can read in "
                                    f"{column!r}; fix that row, or set data.bad_files: skip to "
                                    "leave such rows out.") from None
                bad.append(row)
    if not bad:
        return ds, 0
    keep = np.setdiff1d(np.arange(len(ds)), np.asarray(bad))
    return ds.select(keep), len(bad)
