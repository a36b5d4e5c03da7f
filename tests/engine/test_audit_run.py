"""The audit end to end in this process (engine/audit/run.py): its features are the ones a
head-only run trains on and share one cache with it (either way round), it reports
progress and honours stop, and it audits image folders, multi-label text and `hf:` splits,
each with small real data (scikit-learn's digits, the tiny models, a loopback hub)."""

from __future__ import annotations

import dataclasses
import random
import re
import shutil
import threading

import numpy as np
import pytest

from engine.core.config import FreezeSpec, HeadSpec, RunConfig
from tests.support import needs_cleanlab
from tests.support.task_data import write_digits_folder, write_multilabel_csv
from tests.support.tests_helpers import config_for

pytestmark = needs_cleanlab


def head_only(cfg: RunConfig) -> RunConfig:
    return dataclasses.replace(cfg, freeze=FreezeSpec(policy="head_only"),
                               head=HeadSpec(pooling="mean"))


def test_a_head_only_run_after_an_audit_extracts_nothing_again(tmp_path, tiny_bert,
                                                                sentiment_csv):
    from engine.audit.run import AuditProgress, audit
    from engine.core.events import Note
    from engine.training.loop import train

    cfg = head_only(config_for(tmp_path, tiny_bert, sentiment_csv, epochs=1))
    seen: list[AuditProgress] = []
    first = audit(cfg, progress=seen.append)
    rows = first.rows["train"]
    assert first.features == {"train": {"reused": 0, "computed": rows}}
    features = [p for p in seen if p.stage == "features"]
    assert features[-1].done == features[-1].total == rows and len(features) > 1
    assert [p.done for p in features] == sorted(p.done for p in features)
    folds = [p for p in seen if p.stage == "folds"]
    assert [p.done for p in folds] == [1, 2, 3, 4, 5]

    notes: list = []
    outcome = train(cfg, notes.append, threading.Event(), out_dir=tmp_path / "run")
    assert outcome.status == "completed"
    cached = next(n.message for n in notes if isinstance(n, Note)
                  and "Cached frozen-backbone features" in n.message)
    reused, total = map(int, re.search(r"\((\d+) of (\d+) read", cached).groups())
    assert reused == total == rows, cached  # every example, split any way, came from the audit

    again = audit(cfg)
    assert again.features == {"train": {"reused": rows, "computed": 0}}
    assert again.label_issues == first.label_issues


def test_a_head_only_run_first_fills_the_cache_the_audit_then_reads(tmp_path, tiny_bert,
                                                                     sentiment_csv):
    from engine.audit.run import audit
    from engine.training.loop import train

    cfg = head_only(config_for(tmp_path, tiny_bert, sentiment_csv, epochs=1))
    assert train(cfg, lambda e: None, threading.Event(),
                 out_dir=tmp_path / "run").status == "completed"
    report = audit(cfg)
    assert report.features["train"]["computed"] == 0
    off = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache=False))
    assert audit(off).features["train"]["reused"] == 0  # data.cache: false reads nothing


def test_stop_ends_the_audit_between_batches_with_one_sentence(tmp_path, tiny_bert,
                                                                sentiment_csv):
    from engine.audit.run import AuditStopped, audit

    cfg = config_for(tmp_path, tiny_bert, sentiment_csv, max_length=32)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=4))
    stop = threading.Event()
    seen = []

    def progress(p) -> None:
        seen.append(p)
        stop.set()

    with pytest.raises(AuditStopped, match="stopped before it finished"):
        audit(cfg, progress=progress, stop=stop)
    assert len(seen) == 1 and seen[0].done < seen[0].total  # not one batch more


def test_an_image_head_only_run_after_an_audit_reads_every_feature_from_the_cache(
        tmp_path, tiny_vit):
    from engine.audit.run import audit
    from engine.core.events import Note
    from engine.training.loop import train

    root = write_digits_folder(tmp_path / "digits", per_class=20, classes=range(3))
    cfg = RunConfig.from_dict({
        "model": {"id": str(tiny_vit)}, "head": {"task": "image-classification"},
        "freeze": {"policy": "head_only"}, "base_dir": str(tmp_path),
        "data": {"train": str(root), "validation_split": 0.25},
        "train": {"epochs": 10, "batch_size": 8, "learning_rate": 1.0, "seed": 0,
                  "restore_best": False}})  # the saved head is the last step's
    first = audit(cfg)
    rows = first.rows["train"]
    assert first.features == {"train": {"reused": 0, "computed": rows}}

    def run(cfg, name):
        notes: list = []
        outcome = train(cfg, notes.append, threading.Event(), out_dir=tmp_path / name)
        assert outcome.status == "completed"
        cached = [n.message for n in notes if isinstance(n, Note)
                  and "Cached frozen-backbone features" in n.message]
        return outcome.summary, cached

    summary, (cached,) = run(cfg, "after-audit")
    reused, total = map(int, re.search(r"\((\d+) of (\d+) read", cached).groups())
    assert reused == total == rows, cached
    assert summary["final_accuracy"] > summary["baseline_majority_accuracy"]
    # The same run computing every feature afresh (the disk cache off) ends the same...
    off = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache=False))
    fresh, (computed,) = run(off, "no-disk-cache")
    assert "(0 of" in computed
    assert fresh["final_accuracy"] == summary["final_accuracy"]
    assert fresh["final_loss"] == pytest.approx(summary["final_loss"], rel=1e-5, abs=1e-6)
    # ...and its head, put back on the backbone, scores the validation images as the
    # plain (backbone every batch) evaluation sees them: the features are the head's inputs.
    import torch
    from transformers import AutoModelForImageClassification

    from engine.tasks import task_for

    task = task_for("image-classification")
    processor, _ = task.load_processor(cfg)
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "after-audit" / "model")
    metrics = task.evaluate(model.eval(), task.load_data(cfg, processor), processor, cfg,
                            torch.device("cpu"))
    assert metrics["accuracy"] == summary["final_accuracy"]
    assert metrics["loss"] == pytest.approx(summary["final_loss"], rel=1e-4)
    # Augmented training images differ every epoch: never cached.
    augmented = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, augment=True))
    assert run(augmented, "augmented")[1] == []
    assert audit(cfg).features == {"train": {"reused": rows, "computed": 0}}


def test_a_torchvision_backbone_caches_features_under_its_weights_file(tmp_path):
    """A torchvision backbone's features are cached under the weights file it was read
    from: a second audit reads them all, other weights in that file compute afresh, and
    a random start (no file) caches nothing."""
    import os

    import torch
    from safetensors.torch import save_file
    from torchvision.models import get_model

    from engine.audit.run import audit

    root = write_digits_folder(tmp_path / "digits", per_class=10, classes=range(2))
    weights = tmp_path / "mobilenet.safetensors"

    def save(seed: int) -> None:
        torch.manual_seed(seed)
        save_file(get_model("mobilenet_v3_small", weights=None).state_dict(), str(weights))

    save(0)
    cfg = RunConfig.from_dict({
        "model": {"id": "torchvision:mobilenet_v3_small", "weights": str(weights)},
        "head": {"task": "image-classification"}, "base_dir": str(tmp_path),
        "data": {"train": str(root), "image_size": 64}})
    rows = 20
    assert audit(cfg, folds=2).features == {"train": {"reused": 0, "computed": rows}}
    assert audit(cfg, folds=2).features == {"train": {"reused": rows, "computed": 0}}
    stamp = weights.stat().st_mtime_ns
    save(1)
    os.utime(weights, ns=(stamp + 10**9, stamp + 10**9))  # a new file, even on a coarse clock
    assert audit(cfg, folds=2).features == {"train": {"reused": 0, "computed": rows}}
    random_start = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model,
                                                                      weights="none"))
    for _ in range(2):
        assert audit(random_start, folds=2).features == {"train": {"reused": 0,
                                                                   "computed": rows}}


@pytest.fixture
def digits(tmp_path):
    """Three digit classes, four images moved to another class's folder, a copy of an
    image under another name, and a file that is not an image."""
    root = write_digits_folder(tmp_path / "digits", per_class=30, classes=range(3))
    rng = random.Random(0)
    moved = []
    for c in ("0", "1", "2"):
        for f in rng.sample(sorted((root / c).iterdir()), 2 if c != "2" else 1):
            target = root / str((int(c) + 1) % 3) / f"moved-{f.name}"
            shutil.move(f, target)
            moved.append(target)
    original = sorted((root / "1").glob("1-*.png"))[0]
    shutil.copy(original, root / "1" / "zz-copy.png")
    (root / "2" / "broken.png").write_bytes(b"not an image")
    return root, moved, original


def test_an_image_folder_audit_finds_moved_images_copies_and_unreadable_files(
        tmp_path, tiny_vit, digits):
    from engine.audit.clean import write_clean
    from engine.audit.run import audit

    root, moved, original = digits
    cfg = RunConfig.from_dict({"model": {"id": str(tiny_vit)},
                               "head": {"task": "image-classification"},
                               "data": {"train": str(root), "validation_split": 0.2},
                               "train": {"batch_size": 16}})
    report = audit(cfg)
    assert report.kind == "image"
    assert [u["path"] for u in report.unreadable] == [str(root / "2" / "broken.png")]
    exact = [d for d in report.duplicates if d["kind"] == "exact"]
    assert [sorted(d["paths"]) for d in exact] == [sorted([str(original),
                                                           str(root / "1" / "zz-copy.png")])]
    flagged = [i["path"] for i in report.label_issues[:2 * len(moved)]]
    assert len(set(flagged) & {str(m) for m in moved}) >= len(moved) // 2, flagged
    assert all(set(i) >= {"split", "row", "label", "suggested", "confidence", "path"}
               for i in report.label_issues)

    cleaned = write_clean(cfg, report, tmp_path / "clean.csv")
    import pandas as pd

    table = pd.read_csv(cleaned.path)
    assert list(table.columns) == ["path", "label"] and len(table) == cleaned.kept
    assert str(root / "2" / "broken.png") not in set(table["path"])
    assert str(root / "1" / "zz-copy.png") not in set(table["path"])
    with pytest.raises(Exception, match="csv, .*parquet"):
        write_clean(cfg, report, tmp_path / "clean.txt")


def test_multilabel_label_issues_rank_flipped_label_sets_first():
    from engine.audit.findings import MULTI_SEPARATOR, find_multilabel_issues

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, size=(240, 3))
    truth[truth.sum(1) == 0, 0] = 1
    features = truth * 4.0 + rng.normal(0, 1, size=(240, 3))
    features = np.hstack([features, rng.normal(0, 1, size=(240, 5))])
    flipped = rng.choice(240, size=12, replace=False)
    noisy = truth.copy()
    noisy[flipped, 1] = 1 - noisy[flipped, 1]
    sets = [list(np.flatnonzero(r)) for r in noisy]
    names = ["a", "b", "c"]
    issues = find_multilabel_issues(features, sets, names, split="train", seed=0)
    top = {i.row for i in issues[:12]}
    assert len(top & set(flipped.tolist())) >= 10
    first = next(i for i in issues if i.row in set(flipped.tolist()))
    assert first.suggested == MULTI_SEPARATOR.join(
        n for n, on in zip(names, truth[first.row], strict=True) if on)


def test_a_multilabel_file_is_audited_and_relabelled_in_its_own_cell_format(tmp_path,
                                                                             tiny_bert):
    import csv

    from engine.audit.clean import write_clean
    from engine.audit.run import audit

    data = write_multilabel_csv(tmp_path / "multi.csv", rows=80)
    cfg = RunConfig.from_dict({"model": {"id": str(tiny_bert)},
                               "head": {"task": "multi-label-classification"},
                               "data": {"train": str(data), "max_length": 32}})
    report = audit(cfg, folds=3)
    assert report.kind == "multi-label" and report.rows == {"train": 80}
    assert report.features["train"]["computed"] == 80
    row = report.label_issues[0]["row"] if report.label_issues else 0
    cleaned = write_clean(cfg, report, tmp_path / "clean.csv", choices={row: "negative|venue"})
    with open(cleaned.path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    assert cleaned.relabelled == 1 and len(rows) == cleaned.kept
    assert "negative|venue" in {r["label"] for r in rows}


def test_an_hf_split_is_audited_with_its_class_names_and_validation_split(hub_server,
                                                                          tiny_bert,
                                                                          tmp_path):
    from engine.audit.clean import write_clean
    from engine.audit.run import audit

    cfg = RunConfig.from_dict({"model": {"id": str(tiny_bert)},
                               "data": {"train": "hf:hubtune-test/sentiment",
                                        "max_length": 32}})
    report = audit(cfg, folds=3)
    assert report.rows == {"train": 96, "validation": 32}
    assert {i["label"] for i in report.label_issues} <= {"neg", "pos"}
    cleaned = write_clean(cfg, report, tmp_path / "clean.parquet")
    import pandas as pd

    table = pd.read_parquet(cleaned.path)
    assert set(table["label"]) == {"neg", "pos"} and len(table) == cleaned.kept


def test_text_pairs_are_duplicates_only_when_both_texts_match(tmp_path, tiny_bert):
    import csv

    from engine.audit.run import audit
    from tests.support.task_data import write_pair_csv

    data = write_pair_csv(tmp_path / "pairs.csv", rows=40)
    with open(data, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    rows.append(dict(rows[0]))  # row 40: a copy of row 0, pair and all
    with open(data, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "text_pair", "label"])
        w.writeheader()
        w.writerows(rows)
    cfg = RunConfig.from_dict({"model": {"id": str(tiny_bert)},
                               "head": {"task": "text-pair-classification"},
                               "data": {"train": str(data), "text_pair_column": "text_pair",
                                        "max_length": 32}})
    report = audit(cfg, folds=3)
    exact = [set(d["rows"]) for d in report.duplicates if d["kind"] == "exact"]
    same = {i for i, r in enumerate(rows) if (r["text"], r["text_pair"]) ==
            (rows[0]["text"], rows[0]["text_pair"])}
    assert same >= {0, 40} and same in exact
    # Rows sharing only their first text (the set has few) are not exact duplicates.
    assert all(len({rows[i]["text_pair"] for i in group}) == 1 for group in exact)
