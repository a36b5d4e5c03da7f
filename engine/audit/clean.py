"""A cleaned copy of an audited training file (`data audit --write-clean OUT`), in the
input's own format, never over it, with the audit beside it (`OUT.audit.json`), so a
run trained on the copy can say which audit it came from.

`drop` leaves out the likely label errors, degenerate inputs, the extra copies of
exact duplicates and the training rows that reappear in the validation file; `relabel`
gives the likely label errors their suggested label instead, and drops the rest as
`drop` does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from engine.audit.run import AuditReport
from engine.core.config import RunConfig
from engine.core.errors import DataError
from engine.core.outputs import refuse_overwriting_input
from engine.data.provenance import SIDECAR

MODES = ("drop", "relabel")


@dataclass(frozen=True)
class Cleaned:
    path: Path
    dropped: int
    relabelled: int
    kept: int


def write_clean(cfg: RunConfig, report: AuditReport, target: Path, *,
                mode: str = "drop") -> Cleaned:
    from engine.data.reader import read_table

    if mode not in MODES:
        raise DataError(f"--write-clean takes --drop or --relabel, not {mode!r}.")
    source = cfg.resolve(cfg.data.train)
    target = Path(target).expanduser()
    refuse_overwriting_input(target, [(source, "the training file the audit read")])
    if target.exists():
        raise DataError(f"{target} exists already; give a new file for the cleaned copy "
                        "(the audit never writes over a file).")
    if target.suffix.lower() != source.suffix.lower():
        raise DataError(f"The cleaned copy keeps the input's format: name it *"
                        f"{source.suffix} like {source.name}.")
    frame = read_table(source, encoding=cfg.data.encoding)
    issues = {i["row"]: i["suggested"] for i in report.label_issues if i["split"] == "train"}
    drop = {d["row"] for d in report.degenerate if d["split"] == "train"}
    for group in report.duplicates:
        if group["split"] == "train" and group["kind"] == "exact":
            drop.update(group["rows"][1:])
    drop.update(leak["train_row"] for leak in report.leaks)
    relabelled = 0
    if mode == "relabel":
        for row, suggested in issues.items():
            if row not in drop:
                frame.at[frame.index[row], cfg.data.label_column] = suggested
                relabelled += 1
    else:
        drop.update(issues)
    kept = frame.drop(index=[frame.index[r] for r in sorted(drop) if r < len(frame)])
    _write_like(kept, source, target, cfg.data.encoding)
    record = {"source": str(source), "source_sha256": _sha256(source), "mode": mode,
              "dropped": len(drop), "relabelled": relabelled, "audit": report.to_json()}
    Path(str(target) + SIDECAR).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return Cleaned(target, len(drop), relabelled, len(kept))


def _write_like(frame, source: Path, target: Path, encoding: str) -> None:
    suffix = source.suffix.lower()
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".csv", ".tsv"):
        from engine.data.reader import _delimiter, text_encoding

        codec = text_encoding(encoding)
        sep = "\t" if suffix == ".tsv" else _delimiter(source, codec, "csv")
        frame.to_csv(target, sep=sep, index=False, encoding=codec)
    elif suffix in (".jsonl", ".json"):
        frame.to_json(target, orient="records", lines=True, force_ascii=False)
    elif suffix == ".parquet":
        frame.to_parquet(target, index=False)
    else:
        raise DataError(f"The audit writes CSV, TSV, JSONL and Parquet copies; "
                        f"{source.name} is none of them.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
