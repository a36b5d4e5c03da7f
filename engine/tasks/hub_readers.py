"""`hf:` datasets for token classification, seq2seq and the language models.

Each reader picks its columns with the fallbacks files have (tokens/ner_tags,
source/target or a `translation` column, a text column), checks the rows with
Arrow compute, and tokenises each split by one batched `datasets` map into an
Arrow table on disk (beside the split's own, in the `datasets` cache). The
examples are `FieldExamples` whose fields are `ArrowColumn`s: `FieldCollator`
reads one row at a time and the ids are never held as Python lists. Tag names
come from a `ClassLabel` sequence feature where the dataset has one.
"""

from __future__ import annotations

from engine.core.config import RunConfig
from engine.core.errors import DataError
from engine.data.hub.rows import (
    OpenSplits,
    arrow_column,
    blank,
    check_list_column,
    check_string_column,
    keep_rows,
    open_splits,
)
from engine.data.hub.splits import MAP_BATCH_ROWS, class_names, pick_hub_column
from engine.data.loading import check_stop
from engine.data.text_cells import cut_texts  # a huge cell is cut before the tokenizer
from engine.tasks.base import FieldExamples, TaskData
from engine.tasks.columns import LM_TEXT_NAMES, SOURCE_NAMES, TAG_NAMES, TARGET_NAMES, WORD_NAMES
from engine.tasks.hub_data import hub_splits, hub_task_data


def field_examples(ds, names: tuple[str, ...]) -> FieldExamples:
    """A tokenised split (input_ids and `names`) as FieldExamples over its Arrow columns."""
    import pyarrow.compute as pc

    from engine.data.hub.text import ArrowColumn

    lengths = pc.list_value_length(ds.data.column("input_ids")).to_pylist()
    return FieldExamples({n: ArrowColumn(ds, n) for n in ("input_ids", *names)}, lengths)


def _pick(ds, where: str, spec, key: str, names: tuple[str, ...]):
    default = "text" if key == "text_column" else "label"
    return pick_hub_column(ds, where, getattr(spec, key), key, default, names)


# -- token classification ---------------------------------------------------------


def load_hub_tokens(cfg: RunConfig, tokenizer, align) -> TaskData:
    """Words and tags per row (conll2003's `tokens` and `ner_tags`), tags aligned to the
    first sub-token of each word by `align(word_ids, word_labels)`, as for files."""
    spec = cfg.data
    splits = hub_splits(cfg)

    def pick(ds, where):
        words, note = _pick(ds, where, spec, "text_column", WORD_NAMES)
        tags, other = _pick(ds, where, spec, "label_column", TAG_NAMES)
        check_list_column(ds, where, words, "text_column", "words")
        check_list_column(ds, where, tags, "label_column", "tags")
        return ({"text_column": words, "label_column": tags},
                [n for n in (note, other) if n])

    read = open_splits(cfg, splits.train, splits.validation, pick, _check_tag_rows)
    names, index = _tag_names(read)
    encode = _token_encoder(tokenizer, read.columns, index, spec.max_length, align)
    train = _map(read.train, encode)
    validation = _map(read.validation, encode)
    return hub_task_data(cfg, splits, field_examples(train, ("labels",)),
                         field_examples(validation, ("labels",)), read.notes, labels=names,
                         warnings=tuple(read.warnings))


def _check_tag_rows(ds, where: str, columns: dict[str, str]):
    """One tag per word in every row (else the first row that differs is the message);
    rows without words are left out, with a warning."""
    import numpy as np
    import pyarrow.compute as pc

    words = pc.list_value_length(arrow_column(ds, columns["text_column"]))
    tags = pc.list_value_length(arrow_column(ds, columns["label_column"]))
    n_words = np.asarray(pc.fill_null(words, 0).to_numpy(zero_copy_only=False))
    n_tags = np.asarray(pc.fill_null(tags, 0).to_numpy(zero_copy_only=False))
    bad = np.flatnonzero(n_words != n_tags)
    if len(bad):
        row = int(bad[0])
        raise DataError(f"{where} row {row + 1}: {n_words[row]} words but {n_tags[row]} tags; "
                        "every word needs exactly one tag.")
    if len(ds) and not n_words.any():
        raise DataError(f"{where} holds no words in {columns['text_column']!r}; each row needs "
                        "a list of words and one tag per word.")
    ds, warning = keep_rows(ds, n_words == 0, where, "no words")
    return ds, [warning] if warning else []


def _tag_names(read: OpenSplits) -> tuple[tuple[str, ...], dict | None]:
    """(tag names in class-index order, tag -> index); the index is None where the tags
    are a ClassLabel sequence, whose ints are the indices already."""
    import pyarrow.compute as pc

    column = read.columns["label_column"]
    names = class_names(read.train.features[column])
    if names is not None:
        return names, None
    seen = {str(t) for t in pc.unique(pc.list_flatten(arrow_column(read.train, column)))
            .to_pylist() if t is not None}
    ordered = tuple(sorted(seen, key=lambda t: (t != "O", t.partition("-")[2], t)))
    val = {str(t) for t in pc.unique(pc.list_flatten(arrow_column(read.validation, column)))
           .to_pylist() if t is not None}
    unseen = sorted(val - seen)
    if unseen:
        raise DataError(f"Validation tags {', '.join(unseen)} of {read.val_where} never "
                        f"appear in the training data ({', '.join(ordered)}); fix them or "
                        "add training examples.")
    return ordered, {n: i for i, n in enumerate(ordered)}


def _token_encoder(tokenizer, columns: dict[str, str], index: dict | None, max_length: int,
                   align):
    words_col, tags_col = columns["text_column"], columns["label_column"]

    def encode(batch: dict) -> dict:
        check_stop()
        words = [[str(w) for w in row] for row in batch[words_col]]
        enc = tokenizer(cut_texts(words, max_length), is_split_into_words=True,
                        truncation=True, max_length=max_length, return_attention_mask=False)
        tags = batch[tags_col]
        if index is not None:
            tags = [[index[str(t)] for t in row] for row in tags]
        labels = [align(enc.word_ids(i), row) for i, row in enumerate(tags)]
        return {"input_ids": enc["input_ids"], "labels": labels}

    return encode


def _map(ds, encode):
    """One batched map over the split into a table of the encoder's fields only."""
    return ds.map(encode, batched=True, batch_size=MAP_BATCH_ROWS,
                  remove_columns=list(ds.column_names))


# -- seq2seq ----------------------------------------------------------------------


def load_hub_seq2seq(cfg: RunConfig, tokenizer, references: int) -> TaskData:
    """Source and target columns (or the two languages of a `translation` column); the
    first `references` validation targets kept as text for BLEU, chrF and ROUGE."""
    spec = cfg.data
    splits = hub_splits(cfg)
    fields = _Seq2SeqFields(spec, splits.record["subset"])
    read = open_splits(cfg, splits.train, splits.validation, fields.pick, fields.check)

    def encode(batch: dict) -> dict:
        check_stop()
        sources = [spec.source_prefix + s for s in fields.texts(batch, "source")]
        enc = tokenizer(cut_texts(sources, spec.max_length), truncation=True,
                        max_length=spec.max_length, return_attention_mask=False)
        labels = tokenizer(text_target=cut_texts(fields.texts(batch, "target"),
                                                 spec.max_target_length),
                           truncation=True, max_length=spec.max_target_length)["input_ids"]
        return {"input_ids": enc["input_ids"], "labels": labels}

    train, validation = _map(read.train, encode), _map(read.validation, encode)
    first = read.validation.select(range(min(len(read.validation), references)))
    texts = fields.texts(first[:], "target")  # only what evaluation generates for
    return hub_task_data(cfg, splits, field_examples(train, ("labels",)),
                         field_examples(validation, ("labels",)), read.notes,
                         warnings=tuple(read.warnings), extra={"references": texts})


class _Seq2SeqFields:
    """Where a split's sources and targets are: two text columns, or two languages of a
    `translation` column (data.text_column / label_column name them, else a subset
    named 'de-en' does)."""

    def __init__(self, spec, subset: str) -> None:
        self.spec, self.subset = spec, subset
        self.columns: dict[str, str] = {}
        self.languages: tuple[str, str] | None = None

    def pick(self, ds, where: str):
        spec = self.spec
        if "translation" in ds.column_names and spec.text_column not in ds.column_names \
                and spec.label_column not in ds.column_names:
            self.languages = self._languages(ds, where)
            self.columns = {"text_column": "translation"}
            src, tgt = self.languages
            return self.columns, [f"Translating {src} to {tgt} from the column 'translation' "
                                  f"of {where}"]
        source, note = _pick(ds, where, spec, "text_column", SOURCE_NAMES)
        target, other = _pick(ds, where, spec, "label_column", TARGET_NAMES)
        check_string_column(ds, where, source, "text_column")
        check_string_column(ds, where, target, "label_column", "target text")
        self.columns = {"text_column": source, "label_column": target}
        return self.columns, [n for n in (note, other) if n]

    def _languages(self, ds, where: str) -> tuple[str, str]:
        kind = ds.data.schema.field("translation").type
        langs = tuple(kind[i].name for i in range(kind.num_fields)) if hasattr(
            kind, "num_fields") else ()
        spec = self.spec
        if spec.text_column in langs and spec.label_column in langs:
            return spec.text_column, spec.label_column
        pair = tuple(self.subset.split("-")) if self.subset else ()
        if (spec.text_column, spec.label_column) == ("text", "label") and len(pair) == 2 \
                and set(pair) <= set(langs):
            return pair[0], pair[1]
        example = f" (e.g. {langs[0]} and {langs[1]})" if len(langs) >= 2 else ""
        raise DataError(f"{where} holds translations into {', '.join(langs) or 'no language'} "
                        "in its column 'translation'; set data.text_column to the source "
                        f"language and data.label_column to the target{example}.")

    def texts(self, batch: dict, side: str) -> list[str]:
        if self.languages is not None:
            lang = self.languages[0 if side == "source" else 1]
            return ["" if row is None or row.get(lang) is None else str(row[lang])
                    for row in batch["translation"]]
        column = self.columns["text_column" if side == "source" else "label_column"]
        return ["" if v is None else str(v) for v in batch[column]]

    def check(self, ds, where: str, columns: dict[str, str]):
        """Rows without a target are left out (a row would train towards the empty text)."""
        import pyarrow.compute as pc

        if self.languages is not None:
            target = pc.struct_field(arrow_column(ds, "translation"), self.languages[1])
            name = f"translation.{self.languages[1]}"
        else:
            name = columns["label_column"]
            target = arrow_column(ds, name)
        missing = blank(target)
        if len(ds) and missing.all():
            raise DataError(f"{where} has no values in its target column {name!r}; pick the "
                            "column that holds the target text.")
        ds, warning = keep_rows(ds, missing, where, f"no target in {name!r}")
        return ds, [warning] if warning else []


# -- language models ----------------------------------------------------------------


def load_hub_lm(cfg: RunConfig, tokenizer) -> TaskData:
    """A text column (text, else content or sentence); empty rows and rows of one token
    are left out, as for files."""
    spec = cfg.data
    splits = hub_splits(cfg)

    def pick(ds, where):
        column, note = _pick(ds, where, spec, "text_column", LM_TEXT_NAMES)
        check_string_column(ds, where, column, "text_column")
        return {"text_column": column}, [note] if note else []

    def check(ds, where, columns):
        empty = blank(arrow_column(ds, columns["text_column"]))
        if len(ds) == 0 or empty.all():
            raise DataError(f"{where}: column {columns['text_column']!r} holds no text.")
        import numpy as np

        return ds.select(np.flatnonzero(~empty)), []

    read = open_splits(cfg, splits.train, splits.validation, pick, check)
    column = read.columns["text_column"]

    def encode(batch: dict) -> dict:
        check_stop()
        enc = tokenizer(cut_texts([str(t) for t in batch[column]], spec.max_length),
                        truncation=True, max_length=spec.max_length,
                        return_attention_mask=False)
        return {"input_ids": [x for x in enc["input_ids"] if len(x) > 1]}

    train, validation = _map(read.train, encode), _map(read.validation, encode)
    return hub_task_data(cfg, splits, field_examples(train, ()),
                         field_examples(validation, ()), read.notes)
