"""`hubtune data audit CONFIG`: the config's data looked at with the config's model as a
frozen feature extractor, before any training (engine/audit/findings.py says what is
found and how, engine/audit/sources.py which rows are read and how they are numbered).

Text features are the ones a head-only run trains its head on, read through the
frozen-feature cache (engine/audit/extract.py), so auditing again, or a head-only run
after the audit, computes nothing twice. Image folders are audited from the vision
model's final-layer features, with exact duplicates by pixel hash and unreadable files
listed. Long audits report progress (`AuditProgress`) and honour a stop event between
batches and folds (`AuditStopped`).

Audited: single- and multi-label text (and text-pair) classification from local files
or `hf:` splits, and image classification from local folders or tables of paths; other
heads get one sentence saying what is audited for them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from engine.audit.findings import (
    degenerate_inputs,
    find_duplicates,
    find_label_issues,
    find_leaks,
    find_multilabel_issues,
    rare_labels,
)
from engine.audit.sources import Split, has_validation, read_split
from engine.core.config import RunConfig
from engine.core.errors import DataError

RARE = 5
"""Labels with fewer examples than this are listed as rare."""

__all__ = ["AuditProgress", "AuditReport", "AuditStopped", "Split", "audit", "read_split"]


class AuditStopped(DataError):
    """The stop event was set (Ctrl+C, the TUI's stop) before the audit finished."""


@dataclass(frozen=True)
class AuditProgress:
    """How far a long audit is: a stage, its units done of total, and what it reads."""

    stage: str
    """"features" (examples read by the model) or "folds" (the label check)."""
    done: int
    total: int
    what: str
    """The split or check, in words: "features of train.csv"."""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass
class AuditReport:
    label_issues: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    leaks: list[dict] = field(default_factory=list)
    degenerate: list[dict] = field(default_factory=list)
    rare_labels: list[dict] = field(default_factory=list)
    unreadable: list[dict] = field(default_factory=list)
    """Images that do not open: {split, row, path, reason}."""
    rows: dict[str, int] = field(default_factory=dict)
    features: dict[str, dict] = field(default_factory=dict)
    """Per split: examples whose features were read from the cache, and computed."""
    kind: str = "text"
    """text, multi-label or image: what was audited."""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def audit(cfg: RunConfig, *, folds: int = 5, seed: int = 0,
          progress: Callable[[AuditProgress], None] | None = None,
          stop: threading.Event | None = None) -> AuditReport:
    """Audit the config's training data (and its validation data, if it names some)."""
    from engine.data.examples import PreparationStopped

    try:
        return _audit(cfg, folds, seed, progress or (lambda p: None), stop)
    except PreparationStopped:
        raise AuditStopped("The audit was stopped before it finished; nothing was "
                           "written.") from None


def _audit(cfg: RunConfig, folds: int, seed: int, say, stop) -> AuditReport:
    multi, vision = _check_audited(cfg)
    splits = [read_split(cfg, "train", cfg.data.train, multi=multi, vision=vision)]
    validated = has_validation(cfg)
    if validated:
        splits.append(read_split(cfg, "validation", cfg.data.validation or cfg.data.train,
                                 multi=multi, vision=vision))
    kind = "image" if vision else "multi-label" if multi else "text"
    report = AuditReport(rows={s.name: len(s.texts) for s in splits}, kind=kind)
    if not validated:
        report.notes.append("No validation data: the run holds out a seeded split of the "
                            "training data, so exact and near duplicates inside it are the "
                            "leaks to look at.")
    names = sorted({n for label in splits[0].labels
                    for n in (label if multi else (label,))})
    extractor = _extractor(cfg, vision, names)
    features = {}
    for s in splits:
        report.unreadable += s.unreadable
        what = f"features of {s.where}"
        features[s.name], how = extractor.features(
            s, lambda done, total, what=what: say(AuditProgress("features", done, total, what)),
            stop)
        report.features[s.name] = {"reused": how.reused, "computed": how.computed}
    if vision and len(features["train"]):
        # A vision model's pooled features share a large common part (every image is
        # "an image"): cosine on them calls everything a near duplicate. Centred, it
        # compares what differs.
        centre = features["train"].mean(0, keepdims=True)
        features = {name: f - centre for name, f in features.items()}
    for s in splits:
        if not vision:
            report.degenerate += degenerate_inputs(s.texts, split=s.name, rows=s.rows)
        report.duplicates += [asdict(d) for d in find_duplicates(
            s.inputs, features[s.name], split=s.name, rows=s.rows)]
    report.label_issues, report.rare_labels = _label_check(
        splits[0], features["train"], names, multi, folds=folds, seed=seed, say=say,
        stop=stop, notes=report.notes)
    if len(splits) == 2:
        train, val = splits
        report.leaks = [asdict(leak) for leak in find_leaks(
            train.inputs, val.inputs, features["train"], features["validation"],
            train_rows=train.rows, validation_rows=val.rows)]
    if vision:
        _name_images(report, splits)
    return report


def _extractor(cfg: RunConfig, vision: bool, names: list[str]):
    from engine.audit.extract import ImageExtractor, TextExtractor

    return ImageExtractor(cfg, names) if vision else TextExtractor(cfg)


def _label_check(train: Split, features, names: list[str], multi: bool, *, folds: int,
                 seed: int, say, stop, notes: list[str]) -> tuple[list[dict], list[dict]]:
    """(likely label errors, rare labels) of the training split."""
    index = {n: i for i, n in enumerate(names)}
    what = f"label check: {folds}-fold out-of-sample probabilities"

    def folded(done: int, total: int) -> None:
        say(AuditProgress("folds", done, total, what))

    rare: list[dict] = []
    try:
        if multi:
            sets = [[index[n] for n in label] for label in train.labels]
            rare = rare_labels([k for s in sets for k in s], names, minimum=RARE)
            issues = find_multilabel_issues(features, sets, names, split="train", folds=folds,
                                            seed=seed, rows=train.rows, progress=folded,
                                            stop=stop)
        else:
            codes = [index[label] for label in train.labels]
            rare = rare_labels(codes, names, minimum=RARE)
            issues = find_label_issues(features, codes, names, split="train", folds=folds,
                                       seed=seed, rows=train.rows, progress=folded, stop=stop)
    except DataError as exc:
        if isinstance(exc, AuditStopped):
            raise
        notes.append(str(exc))
        return [], rare
    return [asdict(i) for i in issues], rare


def _name_images(report: AuditReport, splits: list[Split]) -> None:
    """An image finding names its file too (`path`), beside the contract's row."""
    paths = {s.name: dict(zip(s.rows, map(str, s.paths or []), strict=True)) for s in splits}
    for issue in report.label_issues:
        issue["path"] = paths["train"].get(issue["row"], "")
    for group in report.duplicates:
        group["paths"] = [paths[group["split"]].get(r, "") for r in group["rows"]]


def _check_audited(cfg: RunConfig) -> tuple[bool, bool]:
    """(multi-label, images) for an audited head; one sentence for the others."""
    from engine.tasks import task_for

    adapter = task_for(cfg.head.task)
    if adapter.vision:
        return False, True
    kind = getattr(adapter, "label_kind", None)
    if kind not in ("single_label", "multi_label") or getattr(adapter, "embedding", False):
        raise DataError(f"The audit checks classification data (labels, duplicates, leaks) "
                        f"of text, text-pair, multi-label and image heads; head.task "
                        f"{cfg.head.task} data is not audited.")
    return kind == "multi_label", False

