"""A cleaned copy of audited training data (`data audit --write-clean OUT`), never over
its input, with the audit beside it (`OUT.audit.json`), so a run trained on the copy can
say which audit it came from.

`drop` leaves out the likely label errors, degenerate inputs, unreadable images, the
extra copies of exact duplicates and the training rows that reappear in the validation
data; `relabel` gives the likely label errors their suggested label instead, and drops
the rest as `drop` does. `choices` (the TUI's hand-picked fixes, and the examples marked
mislabelled from a run's errors, engine/audit/marks.py) replace the label errors'
blanket treatment: exactly those rows are dropped (None) or relabelled (a label name).

A local file's copy keeps its format; an image folder's is a table of path and label
(CSV, TSV, JSONL or Parquet, the images referred to where they are); an `hf:` split's is
a local table of its rows, class labels written as their names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.audit.findings import MULTI_SEPARATOR
from engine.audit.run import AuditReport
from engine.core.config import RunConfig, is_hub_data
from engine.core.errors import DataError
from engine.core.outputs import refuse_overwriting_input
from engine.data.provenance import SIDECAR

MODES = ("drop", "relabel")
TABLES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class Cleaned:
    path: Path
    dropped: int
    relabelled: int
    kept: int


def rows_to_fix(report: AuditReport, mode: str,
                choices: Mapping[int, str | None] | None = None
                ) -> tuple[set[int], dict[int, str]]:
    """(training rows to drop, training rows to relabel: row -> label) for `report`."""
    drop = {d["row"] for d in report.degenerate if d["split"] == "train"}
    drop.update(u["row"] for u in report.unreadable if u["split"] == "train")
    for group in report.duplicates:
        if group["split"] == "train" and group["kind"] == "exact":
            drop.update(group["rows"][1:])
    drop.update(leak["train_row"] for leak in report.leaks)
    relabel: dict[int, str] = {}
    if choices is not None:
        for row, label in choices.items():
            if label is None:
                drop.add(int(row))
            else:
                relabel[int(row)] = label
    else:
        issues = {i["row"]: i["suggested"] for i in report.label_issues
                  if i["split"] == "train"}
        if mode == "relabel":
            relabel = {r: s for r, s in issues.items() if s}
            drop.update(r for r, s in issues.items() if not s)
        else:
            drop.update(issues)
    return drop, {r: s for r, s in relabel.items() if r not in drop}


def write_clean(cfg: RunConfig, report: AuditReport, target: Path, *, mode: str = "drop",
                choices: Mapping[int, str | None] | None = None) -> Cleaned:
    if mode not in MODES:
        raise DataError(f"--write-clean takes --drop or --relabel, not {mode!r}.")
    target = Path(target).expanduser()
    frame, source, label_column = _source_table(cfg, report)
    if source is not None:
        refuse_overwriting_input(target, [(source, "the training data the audit read")])
    if target.exists():
        raise DataError(f"{target} exists already; give a new file for the cleaned copy "
                        "(the audit never writes over a file).")
    like = source.suffix.lower() if source is not None and source.is_file() else None
    if like is not None and target.suffix.lower() != like:
        raise DataError(f"The cleaned copy keeps the input's format: name it *{like} like "
                        f"{source.name}.")
    if target.suffix.lower() not in TABLES:
        raise DataError(f"Name the cleaned copy *.csv, *.tsv, *.jsonl or *.parquet, not "
                        f"{target.name}.")
    drop, relabel = rows_to_fix(report, mode, choices)
    multi = report.kind == "multi-label"
    for row, suggested in relabel.items():
        if row < len(frame):
            at = frame.index[row]
            _set_label(frame, at, label_column,
                       _cell_like(frame.at[at, label_column], suggested, multi))
    kept = frame.drop(index=[frame.index[r] for r in sorted(drop) if r < len(frame)])
    _write_like(kept, source, target, cfg.data.encoding)
    record = {"source": str(source if source is not None else cfg.data.train),
              "source_sha256": _sha256(source) if source is not None and source.is_file()
              else None, "mode": "by hand" if choices is not None else mode,
              "dropped": len(drop), "relabelled": len(relabel), "audit": report.to_json()}
    Path(str(target) + SIDECAR).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return Cleaned(target, len(drop), len(relabel), len(kept))


def _source_table(cfg: RunConfig, report: AuditReport):
    """(the training rows as a pandas table numbered as the audit numbered them, the local
    file or folder, the label column's name)."""
    import pandas as pd

    if is_hub_data(cfg.data.train):
        return _hub_table(cfg), None, cfg.data.label_column
    source = cfg.resolve(cfg.data.train)
    if report.kind == "image":
        from engine.tasks.image import read_images

        table = read_images(cfg, cfg.data.train, "training")
        column = "label" if source.is_dir() else cfg.data.label_column
        return (pd.DataFrame({"path": [str(p) for p in table["path"]],
                              column: list(table["label"])}), source, column)
    from engine.data.file_rows import read_rows

    return (read_rows(source, encoding=cfg.data.encoding).frame(), source,
            cfg.data.label_column)


def _hub_table(cfg: RunConfig):
    from engine.data.hub.splits import class_names, text_columns
    from engine.tasks.hub_data import hub_splits

    split = hub_splits(cfg).train
    ds = split.open(seed=cfg.train.seed)
    _, _, label, _ = text_columns(ds, split.where, cfg.data)
    names = class_names(ds.features[label])
    frame = ds.to_pandas()
    if names is not None:
        frame[label] = [[names[k] for k in v] if hasattr(v, "__len__") else
                        (names[v] if v is not None and v >= 0 else None)
                        for v in frame[label]]
    return frame


def _cell_like(original, suggested: str, multi: bool):
    """`suggested` written as the original cell was: a list stays a list, a multi-label
    text keeps its separator."""
    if not multi:
        return suggested
    names = [n for n in suggested.split(MULTI_SEPARATOR) if n]
    if hasattr(original, "tolist") or isinstance(original, (list, tuple)):
        return names
    text = str(original)
    sep = next((s for s in ("|", ";", ",") if s in text), MULTI_SEPARATOR)
    return sep.join(names)


def _set_label(frame, at, column: str, value) -> None:
    """Write a label cell as its column holds labels: a whole number in a column of them
    stays one (2, never '2' or 2.0), a number in a column of decimals a decimal; else the
    column holds text from then on (pandas refuses text in a column of numbers)."""
    from pandas.api import types

    kind = frame[column].dtype
    if isinstance(value, str) and types.is_numeric_dtype(kind) and not \
            types.is_bool_dtype(kind):
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is not None and (types.is_float_dtype(kind) or number.is_integer()):
            frame.at[at, column] = int(number) if types.is_integer_dtype(kind) else number
            return
    if not (types.is_object_dtype(kind) or types.is_string_dtype(kind)):
        frame[column] = frame[column].astype(object)
    frame.at[at, column] = value


def _write_like(frame, source: Path | None, target: Path, encoding: str) -> None:
    suffix = target.suffix.lower()
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".csv", ".tsv"):
        from engine.data.reader import _delimiter, text_encoding

        codec = text_encoding(encoding)
        sep = ("\t" if suffix == ".tsv" else
               _delimiter(source, codec, "csv") if source is not None and source.is_file()
               else ",")
        frame.to_csv(target, sep=sep, index=False, encoding=codec)
    elif suffix in (".jsonl", ".json"):
        frame.to_json(target, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_parquet(target, index=False)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
