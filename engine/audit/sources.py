"""The rows an audit reads: a local file's, an `hf:` split's or an image folder's inputs
and labels, numbered as the contract says (0-based data rows of a file, header
excluded; rows of a hub split; an image folder's files in the order the trainer scans
them: class folders sorted, files sorted within each).

Text is read as training reads it (the same cell rules), so a text's token ids, and
with them its cached features, are the ones a run on the same data computes. Images are
opened here once: an unreadable one is a finding, not a failure, and each readable one
gets a hash of its decoded pixels, which is what "exact duplicate" means for images.
Imports neither torch nor textual.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.config import RunConfig, is_hub_data
from engine.core.errors import DataError


@dataclass
class Split:
    name: str
    """train or validation."""
    where: str
    """How messages name it: a file name or hf:OWNER/NAME (split S)."""
    rows: list[int]
    texts: list[str]
    """The inputs (an image's pixel hash), compared for exact duplicates and leaks."""
    labels: list
    """A label name per row; a tuple of names per row for multi-label data."""
    pairs: list[str] | None = None
    paths: list[Path] | None = None
    """Images: the file of each row."""
    unreadable: list[dict] = field(default_factory=list)
    path: Path | None = None
    """The local file (or folder) read, None for hub data."""

    @property
    def inputs(self) -> list[str]:
        """What duplicates and leaks compare: the text, and its pair when there is one."""
        if self.pairs is None:
            return self.texts
        return [f"{t} ||| {p}" for t, p in zip(self.texts, self.pairs, strict=True)]


def read_split(cfg: RunConfig, name: str, value: str, *, multi: bool = False,
               vision: bool = False) -> Split:
    """A split's rows with an input and a label (rows missing either are left out)."""
    if is_hub_data(value):
        return _hub_split(cfg, name, value, multi=multi, vision=vision)
    path = cfg.resolve(value)
    if vision:
        return _image_split(cfg, name, path)
    if path.is_dir():
        raise DataError(f"data.{name} {path.name} is a folder of images; set head.task "
                        "image-classification to audit it.")
    return _text_split(cfg, name, path, multi)


def has_validation(cfg: RunConfig) -> bool:
    """Whether a run of `cfg` validates on data of its own (not a split of the training
    data): a validation file, or a hub dataset's validation split."""
    if cfg.data.validation:
        return True
    if not is_hub_data(cfg.data.train):
        return False
    from engine.tasks.hub_data import hub_splits

    return hub_splits(cfg).validation is not None


def _labels_of(values: list, multi: bool) -> list:
    from engine.data.labels import label_set
    from engine.data.reader import is_missing_label, label_text

    out = []
    for v in values:
        if is_missing_label(v):
            out.append(None)
        elif multi:
            out.append(tuple(sorted(label_set(v))))
        else:
            text = label_text(v).strip()
            out.append(text or None)
    return out


def _text_split(cfg: RunConfig, name: str, path: Path, multi: bool) -> Split:
    from engine.data.file_rows import read_rows
    from engine.data.hub.text import _as_text

    d = cfg.data
    frame = read_rows(path, encoding=d.encoding, role="data")
    for key in ("text_column", "text_pair_column", "label_column"):
        column = getattr(d, key)
        if column is not None and column not in frame.columns:
            raise DataError(f"{path.name} has no column {column!r} (data.{key}); its columns "
                            f"are {', '.join(map(str, frame.columns))}.")
    labels = _labels_of(frame[d.label_column], multi)
    texts = [_as_text(v) for v in frame[d.text_column]]
    pairs = [_as_text(v) for v in frame[d.text_pair_column]] if d.text_pair_column else None
    keep = [i for i, label in enumerate(labels) if label is not None]
    return Split(name, path.name, keep, [texts[i] for i in keep], [labels[i] for i in keep],
                 [pairs[i] for i in keep] if pairs else None, path=path)


def _hub_split(cfg: RunConfig, name: str, value: str, *, multi: bool,
               vision: bool) -> Split:
    from engine.data.hub.splits import class_names, text_columns
    from engine.data.hub.text import _as_text
    from engine.tasks.hub_data import hub_splits

    if cfg.data.streaming:
        raise DataError("The audit reads a whole split; set data.streaming: false to audit "
                        f"{value}.")
    if vision:
        raise DataError("The audit reads image folders (or tables of image paths) from local "
                        "files; hub image datasets are not audited yet.")
    splits = hub_splits(cfg)
    split = splits.train if name == "train" else splits.validation
    if split is None:
        raise DataError(f"{value} has no {name} split to audit.")
    ds = split.open(seed=cfg.train.seed)
    text, pair, label, _ = text_columns(ds, split.where, cfg.data)
    names = class_names(ds.features[label])
    raw = ds[label]
    if names is not None:
        raw = ([[names[k] for k in v] for v in raw] if multi else
               [None if v is None or v < 0 else names[v] for v in raw])
    labels = _labels_of(raw, multi)
    texts = [_as_text(v) for v in ds[text]]
    pairs = [_as_text(v) for v in ds[pair]] if pair else None
    keep = [i for i, y in enumerate(labels) if y is not None]
    return Split(name, split.where, keep, [texts[i] for i in keep],
                 [labels[i] for i in keep], [pairs[i] for i in keep] if pairs else None)


def _image_split(cfg: RunConfig, name: str, path: Path) -> Split:
    from engine.tasks.image import read_images

    table = read_images(cfg, str(path), "training" if name == "train" else "validation")
    split = Split(name, path.name, [], [], [], paths=[], path=path)
    for row, (file, label) in enumerate(zip(table["path"], table["label"], strict=True)):
        digest, problem = pixel_hash(Path(file))
        if problem:
            split.unreadable.append({"split": name, "row": row, "path": str(file),
                                     "reason": problem})
            continue
        split.rows.append(row)
        split.texts.append(digest)
        split.labels.append(label)
        split.paths.append(Path(file))
    return split


def pixel_hash(path: Path) -> tuple[str, str | None]:
    """(a hash of the image's decoded pixels, mode and size; or "" and why it is
    unreadable). Two files holding the same picture in other formats hash alike."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
    except FileNotFoundError:
        return "", "does not exist"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return "", "not a readable image"
    digest = hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()
    return digest, None
