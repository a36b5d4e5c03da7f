"""Local data files go through `datasets` into Arrow, as hub data does: one Arrow table
per file in hubtune's data directory (read once, read again after an edit), a stop
honoured while a file is read, and a set too large for lists tokenised into the same
on-disk Arrow examples hub data trains from, with the same result."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import types
from pathlib import Path

import pytest

from engine.core.errors import DataError
from tests.support.tests_helpers import config_for
from tests.support.tiny_models import write_sentiment_csv


def cached_tables(home: Path) -> list[Path]:
    return sorted((home / "cache" / "datasets").glob("*.arrow"))


def test_a_file_is_read_into_one_arrow_table_and_again_after_an_edit(hubtune_home,
                                                                     tmp_path):
    from engine.data.files import open_file

    path = tmp_path / "d.csv"
    path.write_text("text,label\ngood,pos\nbad,neg\n")
    first = open_file(path)
    assert first["label"] == ["pos", "neg"]
    [table] = cached_tables(hubtune_home)
    assert [f["filename"] for f in first.cache_files] == [str(table)]  # memory-mapped
    assert open_file(path)["text"] == ["good", "bad"] and cached_tables(hubtune_home) == [table]
    path.write_text("text,label\ngood,pos\nbad,neg\nfine,pos\n")
    os.utime(path, ns=(1, 2))  # a new modification time, whatever the clock's resolution
    assert len(open_file(path)) == 3 and len(cached_tables(hubtune_home)) == 2


class _HalfImported(types.ModuleType):
    """A module another thread is still importing: in `sys.modules`, its names not yet
    there (what Python hands a second importing thread to avoid a deadlock)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.asked: list[str] = []

    def __getattr__(self, name: str):
        if not name.startswith("__"):
            self.asked.append(name)
        raise AttributeError(f"partially initialized module {self.__name__!r} has no "
                             f"attribute {name!r} (most likely due to a circular import)")


def test_reading_a_file_never_looks_into_a_half_imported_transformers(hubtune_home,
                                                                      tmp_path, monkeypatch):
    """The new-run form previews a file on a thread while the engine thread may be
    importing transformers and torch. `datasets` fingerprints a dataset by hashing it
    with dill, whose pickler looks into both modules whenever they are in `sys.modules`:
    half imported, they raise (the preview crashed so). The race made deterministic:
    both modules half imported while a file is read, written to the cache and read
    from it, by the preview and by training's reader; nothing may look into them."""
    import datasets  # noqa: F401  imported by now in the app; its own import is not the race

    from engine.data.files import open_file
    from engine.data.reader import preview_file

    half = [_HalfImported("transformers"), _HalfImported("torch")]
    for module in half:
        monkeypatch.setitem(sys.modules, module.__name__, module)
    table = tmp_path / "d.csv"
    table.write_text("text,label\ngood,pos\nbad,neg\nfine,pos\n")
    array = tmp_path / "a.json"
    array.write_text('[{" text ": "good", "label": "pos"}]')
    conll = tmp_path / "s.conll"
    conll.write_text("EU B-ORG\nrejects O\n")
    for _ in range(2):  # written to the cache, then read from it
        assert preview_file(table).label_counts == (("pos", 2), ("neg", 1))
        assert open_file(table).with_format("arrow")["label"].to_pylist() == [
            "pos", "neg", "pos"]
    assert open_file(array).column_names == ["text", "label"]
    assert open_file(conll, conll=True)["tags"] == [["B-ORG", "O"]]
    assert [m.asked for m in half] == [[], []]
    # And the preview's thread imports neither `datasets` nor the modules it would hash.
    code = ("import sys; from pathlib import Path; from engine.data.reader import "
            "preview_file; preview_file(Path(sys.argv[1])); print(sorted(m for m in "
            "('datasets', 'torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(table)], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[2],
                          env={**os.environ, "HUBTUNE_HOME": str(hubtune_home)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_stop_while_a_file_is_read_leaves_no_table(hubtune_home, tmp_path):
    from engine.data.examples import PreparationStopped, stoppable
    from engine.data.files import open_file

    path = write_sentiment_csv(tmp_path / "s.csv", rows=40)
    stop = threading.Event()
    stop.set()
    with stoppable(stop), pytest.raises(PreparationStopped):
        open_file(path)
    folder = hubtune_home / "cache" / "datasets"
    assert not folder.exists() or list(folder.iterdir()) == []
    assert len(open_file(path)) == 40  # read whole once not stopped


def test_two_threads_reading_one_new_file_each_write_their_own_table(hubtune_home,
                                                                      tmp_path):
    """The TUI's preview thread and its engine thread (token counts, the audit) may read
    the same new file at once: one thread's whole read runs while the other's is half
    written, and both tables, and the one left in the cache, hold every row."""
    from engine.data.examples import stoppable
    from engine.data.files import READ_ROWS, open_table

    path = tmp_path / "both.csv"
    rows = READ_ROWS + 5  # two batches: the second thread runs between them
    path.write_text("text,label\n" + "".join(f"row {i},{i % 2}\n" for i in range(rows)))
    other: list = []

    class _OtherReadsMeanwhile:
        """A stop request never made, asked between batches: after the first batch, the
        other thread reads the whole file."""

        calls = 0

        def is_set(self) -> bool:
            self.calls += 1
            if self.calls == 2:
                thread = threading.Thread(target=lambda: other.append(open_table(path)))
                thread.start()
                thread.join()
            return False

    with stoppable(_OtherReadsMeanwhile()):
        first = open_table(path)
    [table] = cached_tables(hubtune_home)
    for read in (first, other[0], open_table(path)):
        assert read.num_rows == rows and read.column("text")[-1].as_py() == f"row {rows - 1}"
    assert cached_tables(hubtune_home) == [table]
    assert not list(table.parent.glob(".*.partial"))


def test_a_column_that_changes_kind_part_way_is_one_sentence(hubtune_home, tmp_path):
    from engine.data.files import READ_ROWS, open_file

    path = tmp_path / "late.csv"
    # pandas under `datasets` reads 10,000 rows at a time: the first chunk's labels are
    # numbers, a later one's are names.
    path.write_text("text,label\n" + "film,1\n" * READ_ROWS + "film,positive\n")
    with pytest.raises(DataError, match=r"late\.csv cannot be read as one table: column "
                                        r"'label' holds int64 values up to row 10000 and "
                                        r"then others"):
        open_file(path)


def test_a_large_set_trains_from_arrow_examples_equal_to_the_lists(tiny_bert, tmp_path,
                                                                   monkeypatch,
                                                                   hubtune_home):
    import engine.data.file_tokens as file_tokens
    from engine.data.hub.text import ArrowSequenceExamples
    from engine.data.loading import SequenceCollator, load_text_classification
    from engine.modeling.loading import load_tokenizer

    path = write_sentiment_csv(tmp_path / "s.csv", rows=60)
    cfg = config_for(tmp_path, tiny_bert, path)
    tokenizer, _ = load_tokenizer(cfg.model)
    small = load_text_classification(cfg, tokenizer)
    monkeypatch.setattr(file_tokens, "LIST_ROWS", 10)
    monkeypatch.setattr(file_tokens, "TRIM_ROWS", 2)  # pages handed back as rows are read
    large = load_text_classification(cfg, tokenizer)
    assert isinstance(large.train, ArrowSequenceExamples)
    assert not isinstance(small.train, ArrowSequenceExamples)
    assert large.labels == small.labels and large.majority_class == small.majority_class
    for part in ("train", "validation"):
        a, b = getattr(small, part), getattr(large, part)
        assert [a.input_ids[i] for i in range(len(a))] == [b.input_ids[i] for i in
                                                           range(len(b))]
        assert list(a.labels) == list(b.labels) and list(a.lengths) == list(b.lengths)
    batch = SequenceCollator(large.train, 0, False)([0, 1, 2])
    assert batch["input_ids"].shape[0] == 3
    # The data cache pickles examples: a memory-mapped table goes by its path.
    again = pickle.loads(pickle.dumps(large.train))
    assert again.input_ids[5] == small.train.input_ids[5] and len(again) == len(small.train)


def test_a_validation_file_with_a_spaced_label_maps_to_the_training_class(tiny_bert,
                                                                           tmp_path):
    from engine.data.loading import load_text_classification
    from engine.modeling.loading import load_tokenizer

    train = write_sentiment_csv(tmp_path / "s.csv", rows=20)
    val = tmp_path / "v.csv"
    val.write_text("text,label\nnice film,positive \nawful film,negative\n")
    cfg = config_for(tmp_path, tiny_bert, train, validation=str(val))
    tokenizer, _ = load_tokenizer(cfg.model)
    data = load_text_classification(cfg, tokenizer)
    assert list(data.validation.labels) == [data.labels.index("positive"),
                                            data.labels.index("negative")]


LOOK_ALIKE_ROWS = {"text": [f"film {i}" for i in range(13)],
                   "label": ["pos", None, "neg", "pos ", "neg", "Neg", "pos", "  ", "neg",
                             "pos", "neg", "pos", "Neg"]}


def test_hub_rows_and_file_rows_meet_the_same_label_rules(tiny_bert, tmp_path, hubtune_home):
    import datasets
    import pandas as pd

    from engine.data.hub.splits import checked_labels
    from engine.data.text_splits import file_text_splits

    where = "hf:someone/reviews (split train)"
    hub, lmap, hub_warnings = checked_labels(datasets.Dataset.from_dict(LOOK_ALIKE_ROWS),
                                             where, "label", "single")
    path = tmp_path / "reviews.csv"
    pd.DataFrame(LOOK_ALIKE_ROWS).to_csv(path, index=False)
    rows = file_text_splits(config_for(tmp_path, tiny_bert, path, validation_split=0.2))
    assert [w.replace("reviews.csv", where) for w in rows.warnings] == hub_warnings
    assert hub_warnings[0] == (f"2 rows of {where} have no label in 'label' (blank or NA: "
                               "rows 2, 8); they are left out.")
    assert len(hub) == 11 and lmap.names == rows.lmap.names == ("Neg", "neg", "pos")
    mixed = {"text": ["a", "b", "c"], "label": ["1", "0", "positive"]}
    with pytest.raises(DataError, match=r"mixes numbers and names in its label column "
                                        r"'label' \(row 1 has '1', row 3 has 'positive'\)"):
        checked_labels(datasets.Dataset.from_dict(mixed), where, "label", "single")


def test_file_rows_pick_the_rows_a_pandas_table_picks(hubtune_home, tmp_path):
    """The heads beyond the sequence family read a file's Arrow table as `FileRows`: a
    seeded sample, positions, a mask and a CoNLL file select as pandas would, with each
    row's number in its file kept for messages and review."""
    import pandas as pd

    from engine.data.file_rows import read_rows

    path = tmp_path / "d.jsonl"
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(50)],
                          "tags": [["O"] * (i % 3) for i in range(50)]})
    frame.to_json(path, orient="records", lines=True)
    rows = read_rows(path)
    assert rows.columns == ["text", "tags"] and len(rows) == 50
    sample, expected = rows.sample(n=12, random_state=7), frame.sample(n=12, random_state=7)
    assert list(sample.index) == list(expected.index)
    assert sample["text"] == list(expected["text"])
    picked = sample.iloc[[1, 4, 5]]
    assert list(picked.index) == list(expected.iloc[[1, 4, 5]].index)
    kept = picked[[bool(t) for t in picked["tags"]]]
    assert kept["tags"] == [t for t in picked["tags"] if t]
    assert rows.head(3)["text"] == ["row 0", "row 1", "row 2"]
    conll = tmp_path / "d.conll"
    conll.write_text("EU B-ORG\nrejects O\n\nPeter B-PER\n")
    sentences = read_rows(conll, conll=True)
    assert sentences["tokens"] == [["EU", "rejects"], ["Peter"]]
    assert sentences["tags"] == [["B-ORG", "O"], ["B-PER"]]
    with pytest.raises(DataError, match="line 1: expected a word and a tag"):
        (tmp_path / "bad.conll").write_text("word\n")
        read_rows(tmp_path / "bad.conll", conll=True)


def test_one_pruning_rule_serves_file_and_folder_entries(tmp_path):
    """Local files' Arrow tables (files) and the data cache's entries (folders) age out
    by the same rule: most recently used first, a size cap, the newest always kept."""
    from engine.core.cache_files import prune, touch

    entries = []
    for i in range(4):
        entry = tmp_path / f"e{i}"
        if i % 2:
            entry.mkdir()
            (entry / "part.arrow").write_bytes(b"x" * 100)
        else:
            entry.write_bytes(b"x" * 100)
        os.utime(entry, (i, i))
        entries.append(entry)
    touch(entries[0])  # just used: kept over newer but unused ones
    prune(list(tmp_path.iterdir()), keep=3, max_bytes=250)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e0", "e3"]


def test_a_file_whose_name_looks_like_a_pattern_is_read(hubtune_home, tmp_path):
    """`datasets` takes a data file's name as a glob pattern: `d[1].csv` would match
    `d1.csv`, or nothing, and read as a file with no rows."""
    from engine.data.files import open_file

    path = tmp_path / "d[1].csv"
    path.write_text("text,label\ngood,pos\nbad,neg\n")
    (tmp_path / "d1.csv").write_text("text,label\nother,neg\n")
    assert open_file(path)["text"] == ["good", "bad"]


WHOLE_WITH_BLANKS = "text,label,stars\na,1,3\nb,,4\nc,0,\n"


def test_whole_numbers_with_blank_cells_stay_whole_numbers_in_every_format(hubtune_home,
                                                                           tmp_path):
    """pandas' own types make whole numbers with a blank cell float: a table written back
    out (batch prediction's output, the audit's cleaned copy) would spell 3 as 3.0 and a
    label 1 as 1.0. Read from any format, they stay whole and the blank stays blank."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine.data.file_rows import read_rows

    (tmp_path / "d.csv").write_text(WHOLE_WITH_BLANKS)
    (tmp_path / "d.tsv").write_text(WHOLE_WITH_BLANKS.replace(",", "\t"))
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": 1, "stars": 3}\n'
                                      '{"text": "b", "label": null, "stars": 4}\n'
                                      '{"text": "c", "label": 0, "stars": null}\n')
    (tmp_path / "d.json").write_text('[{"text": "a", "label": 1, "stars": 3}, {"text": "b", '
                                     '"stars": 4}, {"text": "c", "label": 0}]')
    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": [1, None, 0],
                             "stars": pa.array([3, 4, None], pa.int32())}),
                   tmp_path / "d.parquet")
    for name in ("d.csv", "d.tsv", "d.jsonl", "d.json", "d.parquet"):
        rows = read_rows(tmp_path / name)
        assert pa.types.is_integer(rows.ds.schema.field("stars").type), name
        assert rows["label"] == [1, None, 0] and rows["stars"] == [3, 4, None], name
        assert rows.frame().to_csv(index=False) == WHOLE_WITH_BLANKS, name
        assert rows.iloc[[2, 0]].frame().to_csv(index=False) == "text,label,stars\nc,0,\n" \
                                                                "a,1,3\n", name
    written = tmp_path / "out.parquet"
    read_rows(tmp_path / "d.csv").frame().to_parquet(written, index=False)
    assert pq.read_table(written).column("stars").to_pylist() == [3, 4, None]
    assert pa.types.is_integer(pq.read_table(written).schema.field("stars").type)
    lines = read_rows(tmp_path / "d.csv").frame().to_json(orient="records", lines=True)
    assert lines.splitlines()[0] == '{"text":"a","label":1,"stars":3}'


# Each file read 2 rows at a time changes kind at a chunk's edge.
CHUNK_EDGES = {
    "blank-later.csv": "t,n\na,1\nb,2\nc,\nd,4\ne,5\n",
    "blank-first.csv": "t,n\na,\nb,\nc,3\nd,4\ne,\n",
    "decimal-later.csv": "t,n\na,1\nb,2\nc,2.5\nd,\ne,6\n",
    "text-later.csv": "t,n\na,\nb,\nc,x\nd,y\ne,\n",
    "null-first.jsonl": '{"t": "a", "n": null}\n{"t": "b"}\n{"t": "c", "n": 3}\n'
                        '{"t": "d", "n": 4}\n{"t": "e", "n": 5}\n',
    "key-later.jsonl": '{"t": "a", "n": 1}\n{"t": "b", "n": 2}\n{"t": "c", "n": null}\n'
                       '{"t": "d", "n": 4, "k": "new"}\n{"t": "e", "n": 5}\n',
}


def test_a_file_read_a_chunk_at_a_time_gets_the_types_of_one_read(hubtune_home, tmp_path,
                                                                   monkeypatch):
    """A column whole in the first chunk and blank in the next (or the other way round, or
    decimals later, or text after blanks, or a JSON key first seen later) gets one type
    over the file: the one a read of the whole file in one chunk gives it."""
    import pyarrow as pa

    import engine.data.files as files

    whole, chunked = tmp_path / "whole", tmp_path / "chunked"
    for folder in (whole, chunked):
        folder.mkdir()
        for name, text in CHUNK_EDGES.items():
            (folder / name).write_text(text)
    one = {name: files.open_table(whole / name) for name in CHUNK_EDGES}
    monkeypatch.setattr(files, "READ_ROWS", 2)
    for name in CHUNK_EDGES:
        table = files.open_table(chunked / name)
        assert table.schema == one[name].schema, name
        assert table.to_pylist() == one[name].to_pylist(), name
    assert one["blank-later.csv"].column("n").to_pylist() == [1, 2, None, 4, 5]
    assert one["blank-later.csv"].schema.field("n").type == pa.int64()
    assert one["decimal-later.csv"].schema.field("n").type == pa.float64()
    assert one["key-later.jsonl"].column("k").to_pylist() == [None, None, None, "new", None]
    assert not list((hubtune_home / "cache" / "datasets").glob(".*"))  # no partial left
    (chunked / "late.csv").write_text("t,n\na,1\nb,2\nc,x\n")
    with pytest.raises(DataError, match=r"column 'n' holds int64 values up to row 2 and "
                                        r"then others"):
        files.open_table(chunked / "late.csv")


def test_whole_number_labels_with_a_blank_map_as_they_always_did(tmp_path, hubtune_home,
                                                                  tiny_bert):
    """Labels 0, 1 and 2 with a blank row, read as whole numbers now (not 0.0, 1.0, 2.0):
    the same classes in the same order, each row the class its number names, the blank
    row left out with the same warning; the preview counts them the same."""
    import numpy as np

    from engine.data.hub.text import class_indices
    from engine.data.labels import Cells
    from engine.data.reader import preview_file
    from engine.data.text_splits import file_text_splits

    labels = [i % 3 for i in range(30)]
    labels[4] = None
    path = tmp_path / "numbered.csv"
    path.write_text("text,label\n" + "".join(
        f"film {i},{'' if v is None else v}\n" for i, v in enumerate(labels)))
    rows = file_text_splits(config_for(tmp_path, tiny_bert, path, validation_split=0.2))
    assert rows.lmap.names == ("0", "1", "2")
    assert rows.warnings == ("1 row of numbered.csv has no label in 'label' (blank or NA: "
                             "row 5); it is left out.",)
    for part in (rows.train, rows.validation):
        got = class_indices(Cells(part, "label").col, rows.lmap)
        texts = Cells(part, "text").values()
        assert got.tolist() == [int(t.split()[1]) % 3 for t in texts]
    assert len(rows.train) + len(rows.validation) == 29 and np.all(rows.val_rows != 4)
    preview = preview_file(path, label_column="label")
    assert dict(preview.label_counts) == {"0": 10, "1": 9, "2": 10}


def test_an_image_list_with_whole_number_labels_and_a_blank_reads(tmp_path, hubtune_home,
                                                                   tiny_bert):
    """A list of images whose labels are whole numbers with a blank: a blank in pandas'
    nullable integers is NA, whose truth is an error; it reads as no label."""
    from engine.core.config import RunConfig
    from engine.tasks.image import image_table

    path = tmp_path / "images.csv"
    path.write_text("path,label\na.png,1\nb.png,\nc.png,0\n")
    cfg = RunConfig.from_dict({"model": {"id": str(tiny_bert)},
                               "head": {"task": "image-classification"},
                               "data": {"train": str(path)}})
    table, column = image_table(path, cfg, None)
    assert column == "label" and table["label"].tolist()[::2] == ["1", "0"]
    assert table["label"].isna().tolist() == [False, True, False]
