"""Data read one way, label problems reported: the preview (`hubtune data preview`, the
new-run form) and training read every file identically, and rows without a label or
labels that differ only by case or spaces are warned about in both, never silently."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest

from engine.core.config import RunConfig
from engine.core.errors import DataError
from engine.core.events import Note, RunPrepared
from engine.data.reader import preview_file

CORPUS = Path(__file__).parent / "bad_inputs"
REPO = Path(__file__).resolve().parents[2]

ROWS = [(f"the {noun} was {adj}", label)
        for noun in ("film", "food", "day", "song")
        for adj, label in (("good", "positive"), ("bad", "negative"), ("great", "positive"),
                           ("awful", "negative"), ("café", "positive"))]
"""20 rows, two classes; 'café' has a character that differs between UTF-8 and latin-1."""


def write_variant(kind: str, folder: Path) -> tuple[Path, str]:
    """The same rows written as a user's file might be: (path, its encoding)."""
    frame = pd.DataFrame(ROWS, columns=["text", "label"])
    if kind == "plain.csv":
        return _csv(folder / kind, frame), "utf-8"
    if kind == "bom.csv":  # Excel's "CSV UTF-8"
        path = folder / kind
        path.write_bytes(b"\xef\xbb\xbf" + _csv(path, frame).read_bytes())
        return path, "utf-8"
    if kind == "latin1.csv":
        path = folder / kind
        path.write_bytes(frame.to_csv(index=False).encode("latin-1"))
        return path, "latin-1"
    if kind == "padded.csv":  # spaces around the header names
        path = _csv(folder / kind, frame)
        path.write_text(path.read_text().replace("text,label", " text , label ", 1))
        return path, "utf-8"
    if kind == "semicolon.csv":  # a spreadsheet's CSV in many locales
        path = folder / kind
        frame.to_csv(path, index=False, sep=";")
        return path, "utf-8"
    if kind == "data.tsv":
        path = folder / kind
        frame.to_csv(path, index=False, sep="\t")
        return path, "utf-8"
    if kind in ("data.jsonl", "bom.jsonl"):
        path = folder / kind
        text = frame.to_json(orient="records", lines=True, force_ascii=False)
        path.write_bytes((b"\xef\xbb\xbf" if kind == "bom.jsonl" else b"") + text.encode())
        return path, "utf-8"
    path = folder / kind
    frame.to_parquet(path, index=False)
    return path, "utf-8"


def _csv(path: Path, frame) -> Path:
    frame.to_csv(path, index=False)
    return path


VARIANTS = ("plain.csv", "bom.csv", "latin1.csv", "padded.csv", "semicolon.csv", "data.tsv",
            "data.jsonl", "bom.jsonl", "data.parquet")


def text_config(model: Path, data: Path, encoding: str = "utf-8", **extra) -> RunConfig:
    return RunConfig.from_dict({
        "model": {"id": str(model)}, "head": {"task": "text-classification"},
        "data": {"train": str(data), "encoding": encoding, "validation_split": 0.25,
                 "max_length": 16, "cache": False, **extra},
        "train": {"epochs": 1, "max_steps": 1, "batch_size": 8, "log_every": 1, "seed": 0}})


def as_task(cfg: RunConfig, task: str) -> RunConfig:
    return dataclasses.replace(cfg, head=dataclasses.replace(cfg.head, task=task))


def load_text(cfg: RunConfig):
    from engine.tasks import task_for

    task = task_for(cfg.head.task)
    processor, _ = task.load_processor(cfg)
    return task.load_data(cfg, processor)


@pytest.fixture(scope="module")
def plain_load(tiny_bert, tmp_path_factory):
    path, encoding = write_variant("plain.csv", tmp_path_factory.mktemp("plain"))
    return load_text(text_config(tiny_bert, path, encoding))


@pytest.mark.parametrize("kind", VARIANTS)
def test_preview_shows_what_training_reads(kind, tiny_bert, tmp_path, plain_load):
    from engine.data.file_rows import read_rows

    path, encoding = write_variant(kind, tmp_path)
    preview = preview_file(path, encoding=encoding)
    # No byte-order mark or spaces in a name, the right delimiter, every row as written.
    assert preview.columns == ("text", "label")
    assert preview.rows == tuple(ROWS[:5]) and preview.total_rows == len(ROWS)
    assert dict(preview.label_counts) == {"positive": 12, "negative": 8}
    assert preview.warnings == ()
    # Training reads the same table (the one reader) and trains on the same examples.
    rows = read_rows(path, encoding=encoding)
    assert rows.columns == list(preview.columns)
    assert list(zip(rows["text"], rows["label"], strict=True)) == ROWS
    data = load_text(text_config(tiny_bert, path, encoding))
    assert data.labels == tuple(sorted(k for k, _ in preview.label_counts))
    assert len(data.train) + len(data.validation) == preview.total_rows
    assert dataclasses.asdict(data.train) == dataclasses.asdict(plain_load.train)
    assert dataclasses.asdict(data.validation) == dataclasses.asdict(plain_load.validation)


def test_the_corpus_bom_and_padded_header_files_train(tiny_bert):
    for name in ("bom.csv", "padded_header.csv"):
        preview = preview_file(CORPUS / name)
        assert preview.columns == ("text", "label") and preview.warnings == ()
        data = load_text(text_config(tiny_bert, CORPUS / name))
        assert len(data.train) + len(data.validation) == preview.total_rows == 12


def test_a_wrong_encoding_reads_the_same_error_in_both(tmp_path):
    from engine.data.file_rows import read_rows

    path, _ = write_variant("latin1.csv", tmp_path)
    with pytest.raises(DataError) as previewed:
        preview_file(path)
    with pytest.raises(DataError) as trained:
        read_rows(path)
    assert str(previewed.value) == str(trained.value)
    assert "is not valid utf-8 text (byte 0xe9 on line 6); set data.encoding" in str(
        trained.value)


def test_two_headers_equal_once_trimmed_are_refused(tmp_path):
    path = tmp_path / "twice.csv"
    path.write_text("text, text,label\na,b,c\n")
    with pytest.raises(DataError, match=r"has two columns named 'text' \(spaces around header "
                                        r"names are ignored\); rename one\."):
        preview_file(path)


# -- labels ---------------------------------------------------------------------

EMPTY = ("3 rows of empty_labels.csv have no label in 'label' (blank or NA: rows 3, 5, 8); "
         "they are left out.")
SPACES = ("Labels 'positive' and 'positive ' in 'label' of label_case.csv differ only by "
          "spaces around them; they are read as one label, 'positive'.")
CASE = ("Labels 'POSITIVE' (2 rows), 'Positive' (2 rows) and 'positive' (4 rows) in 'label' "
        "of label_case.csv differ only by case; they are kept as separate classes. If they "
        "mean the same, make them one in the data.")


def run_events(cfg: RunConfig) -> list:
    from engine.training.loop import train

    events = []
    outcome = train(cfg, events.append, threading.Event())
    assert outcome.status == "completed", outcome.error
    return events


def warnings_of(events) -> list[str]:
    return [e.message for e in events if isinstance(e, Note) and e.level == "warning"]


def test_empty_labels_are_left_out_and_reported(tiny_bert):
    path = CORPUS / "empty_labels.csv"
    preview = preview_file(path)
    assert preview.warnings == (EMPTY,)
    assert sum(n for _, n in preview.label_counts) == preview.total_rows - 3 == 11
    events = run_events(text_config(tiny_bert, path))
    assert EMPTY in warnings_of(events)
    [prepared] = [e for e in events if isinstance(e, RunPrepared)]
    assert prepared.train_samples + prepared.validation_samples == 11
    assert prepared.labels == ("negative", "positive")  # no '', no 'NA' class


def test_look_alike_labels_are_reported_spaces_merged_case_kept(tiny_bert):
    path = CORPUS / "label_case.csv"
    preview = preview_file(path)
    assert preview.warnings == (SPACES, CASE)
    assert dict(preview.label_counts) == {"negative": 8, "positive": 4, "Positive": 2,
                                          "POSITIVE": 2}
    events = run_events(text_config(tiny_bert, path))
    assert warnings_of(events)[:2] == [SPACES, CASE]
    [prepared] = [e for e in events if isinstance(e, RunPrepared)]
    assert prepared.labels == ("POSITIVE", "Positive", "negative", "positive")


def test_a_case_twin_is_named_when_it_breaks_the_split(tiny_bert, tmp_path):
    path = tmp_path / "one_upper.csv"
    path.write_text("text,label\n" + "good,positive\nbad,negative\n" * 4 + "great,POSITIVE\n")
    with pytest.raises(DataError, match=r"Label 'POSITIVE' has only 1 example \(it differs "
                                        r"only by case from 'positive'\), too few"):
        load_text(text_config(tiny_bert, path))


def test_multi_label_and_regression_rows_without_a_label_are_reported(tiny_bert, tmp_path):
    multi = tmp_path / "multi.jsonl"
    rows = [{"text": "good film", "label": ["pos", "film"]}, {"text": "bad day", "label": None},
            ] + [{"text": "bad film", "label": ["neg", "film"]},
                 {"text": "good day", "label": ["pos", "Film"]}] * 4
    multi.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_text(as_task(text_config(tiny_bert, multi), "multi-label-classification"))
    assert data.warnings[0].startswith("1 row of multi.jsonl has no label in 'label' "
                                       "(blank or NA: row 2); it is left out.")
    assert "Labels 'Film' (4 rows) and 'film' (5 rows)" in data.warnings[1]
    reg = tmp_path / "reg.csv"
    reg.write_text("text,label\n" + "".join(f"film {i},{i / 10}\n" for i in range(9))
                   + "odd film, \n")
    data = load_text(as_task(text_config(tiny_bert, reg), "regression"))
    assert data.warnings == ("1 row of reg.csv has no label in 'label' (blank or NA: row 10); "
                             "it is left out.",)


def test_data_preview_cli_prints_and_carries_the_warnings():
    def preview(*args):
        out = subprocess.run([sys.executable, "-m", "tui.cli", "data", "preview", *args],
                             capture_output=True, text=True, cwd=REPO, env=os.environ.copy(),
                             timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert f"  warning: {EMPTY}" in preview(str(CORPUS / "empty_labels.csv")).splitlines()
    data = json.loads(preview(str(CORPUS / "label_case.csv"), "--json"))
    assert data["warnings"] == [SPACES, CASE]
    assert data["columns"] == ["text", "label"]


def test_seq2seq_rows_without_a_target_are_left_out_not_trained_as_nan(tiny_seq2seq,
                                                                       tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("source,target\n" + "the film was good,good\nthe day was bad,bad\n" * 5
                    + "the song was fun,\n")
    data = load_text(as_task(text_config(tiny_seq2seq, path), "seq2seq"))
    assert data.warnings == ("1 row of pairs.csv has no label in 'target' (blank or NA: "
                             "row 11); it is left out.",)
    assert len(data.train) + len(data.validation) == 10
    assert "nan" not in data.extra["references"]
