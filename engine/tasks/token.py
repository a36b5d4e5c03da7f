"""Token classification (NER, POS): a label per word, learned on its first sub-token.

Data is JSONL/CSV/Parquet with a list of words and a list of tags per row,
or CoNLL text (one `word ... tag` line per token, a blank line between
sentences). Tags are aligned to sub-tokens through the fast tokenizer's
word ids: the first piece of each word carries the word's tag, the others
and the special tokens get -100, which the loss ignores. Metrics are token
accuracy and entity-level precision / recall / F1 over BIO spans.
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.core.config import RunConfig
from engine.core.errors import DataError
from engine.data.text_cells import cut_texts
from engine.tasks.base import (
    FieldCollator,
    FieldExamples,
    Task,
    TaskData,
    evaluate_batches,
    load_auto_model,
    refuse_folder,
)
from engine.tasks.columns import TAG_NAMES, WORD_NAMES
from engine.tasks.predictions import ExampleInput, FilePredictions, Prediction, batches


def read_conll(path: Path, encoding: str = "utf-8", role: str = "training"):
    """A table of sentences (`FileRows`, engine/data/file_rows.py), through `datasets` into
    Arrow as every head's data is: a CSV, TSV, JSONL or Parquet file, or CoNLL-style text
    (first column the word, last column its tag) as tokens and tags columns."""
    from engine.data.file_rows import read_rows

    return read_rows(path, encoding=encoding, role=role, conll=True)


def entity_spans(tags: list[str]) -> set[tuple[str, int, int]]:
    """(type, start, end) spans of a BIO (or IOB1) tag sequence; a stray I- starts a span."""
    spans, kind, start = set(), None, 0
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, label = tag.partition("-")
        begins = prefix == "B" or (prefix == "I" and label != kind)
        if kind is not None and (tag == "O" or begins or not label):
            spans.add((kind, start, i))
            kind = None
        if begins and label:
            kind, start = label, i
    return spans


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    tp = n_gold = n_pred = 0
    for g, p in zip(gold, pred, strict=True):
        gs, ps = entity_spans(g), entity_spans(p)
        tp += len(gs & ps)
        n_gold += len(gs)
        n_pred += len(ps)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def align_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """A label on the first sub-token of each word, -100 elsewhere."""
    out, previous = [], None
    for w in word_ids:
        out.append(-100 if w is None or w == previous else word_labels[w])
        previous = w
    return out


class TokenTask(Task):
    metrics = ("loss", "accuracy", "precision", "recall", "f1")
    auto_class = "AutoModelForTokenClassification"
    pipeline_tag = "token-classification"
    input_kind = "a sentence"

    # -- using a trained run ------------------------------------------------------

    def predict(self, predictor, inputs):
        return [tag_sentence(predictor, text) for text in inputs]

    def predict_file(self, predictor, cfg: RunConfig, path: Path, column, batch_size: int,
                     progress):
        refuse_folder(path)
        return predict_tags(predictor, path, cfg, column, batch_size, progress)

    def file_review_inputs(self, cfg: RunConfig):
        return tag_inputs(cfg)

    # -- training -----------------------------------------------------------------

    def load_processor(self, cfg: RunConfig):
        tokenizer, path = super().load_processor(cfg)
        if not getattr(tokenizer, "is_fast", False):
            from engine.core.errors import ModelError

            raise ModelError(f"Token classification needs a fast tokenizer (for word ids); "
                             f"{cfg.model.id} has only a slow one.")
        if hasattr(tokenizer, "add_prefix_space") and not tokenizer.add_prefix_space:
            # Byte-level BPE (RoBERTa, GPT-2) must be told words arrive pre-split.
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(path, add_prefix_space=True)
        return tokenizer, path

    def load_data(self, cfg: RunConfig, tokenizer) -> TaskData:
        from engine.core.config import is_hub_data
        from engine.data.loading import as_list, check_stop, load_frames, pick_column

        if is_hub_data(cfg.data.train):
            from engine.tasks.hub_readers import load_hub_tokens

            return load_hub_tokens(cfg, tokenizer, align_labels)
        spec = cfg.data
        # CoNLL text (.conll, .conllu, .bio, .txt) or a table, as the preview reads them.
        train, val, path = load_frames(cfg, lambda p, role: read_conll(p, spec.encoding, role))
        splits, warnings = [], []
        for role, frame in (("training", train), ("validation", val)):
            words_col = pick_column(frame, path, spec.text_column, "text_column", WORD_NAMES)
            tags_col = pick_column(frame, path, spec.label_column, "label_column", TAG_NAMES)
            words = [[str(w) for w in as_list(v, path, words_col, i)]
                     for i, v in enumerate(frame[words_col])]
            tags = [[str(t) for t in as_list(v, path, tags_col, i)]
                    for i, v in enumerate(frame[tags_col])]
            for i, (w, t) in enumerate(zip(words, tags, strict=True)):
                if len(w) != len(t):
                    raise DataError(f"{path} row {i + 1}: {len(w)} words but {len(t)} tags; "
                                    "every word needs exactly one tag.")
            # A row without words has no tag to learn; a batch of them has no loss at all.
            source = (cfg.resolve(spec.validation) if role == "validation" and spec.validation
                      else path)
            empty = sum(1 for w in words if not w)
            if empty == len(words):
                raise DataError(f"The {role} rows of {source} hold no words in {words_col!r}; "
                                "each row needs a list of words and one tag per word.")
            if empty:
                warnings.append(f"{empty} {role} row{'s' if empty != 1 else ''} of "
                                f"{source.name} {'have' if empty != 1 else 'has'} no words; "
                                f"{'they are' if empty != 1 else 'it is'} left out.")
                kept = [i for i, w in enumerate(words) if w]
                words, tags = [words[i] for i in kept], [tags[i] for i in kept]
            splits.append((words, tags))
        names = tuple(sorted({t for tags in splits[0][1] for t in tags},
                             key=lambda t: (t != "O", t.partition("-")[2], t)))
        index = {n: i for i, n in enumerate(names)}
        unseen = sorted({t for tags in splits[1][1] for t in tags} - set(index))
        if unseen:
            raise DataError(f"Validation tags {', '.join(unseen)} never appear in the training "
                            f"data ({', '.join(names)}); fix them or add training examples.")

        def encode(words, tags) -> FieldExamples:
            check_stop()
            # Words past max_length can never be read: cut first (engine.data.text_cells).
            enc = tokenizer(cut_texts(words, spec.max_length), is_split_into_words=True,
                            truncation=True, max_length=spec.max_length,
                            return_attention_mask=False)
            labels = [align_labels(enc.word_ids(i), [index[t] for t in row])
                      for i, row in enumerate(tags)]
            fields = {"input_ids": enc["input_ids"], "labels": labels}
            return FieldExamples(fields, [len(x) for x in enc["input_ids"]])

        train_ex, val_ex = encode(*splits[0]), encode(*splits[1])
        return TaskData(train_ex, val_ex, names, extra={"val_words": splits[1][0]},
                        warnings=tuple(warnings))

    def build(self, cfg: RunConfig, path: Path, data: TaskData):
        labels = list(data.labels)
        return load_auto_model(
            "AutoModelForTokenClassification", self, cfg, path,
            "it needs an encoder such as BERT, RoBERTa or DistilBERT.",
            num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)},
        )

    def collator(self, examples, tokenizer, cfg: RunConfig, *, train: bool):
        return FieldCollator(examples, {"input_ids": self.pad_id(tokenizer), "labels": -100})

    def evaluate(self, model, data: TaskData, tokenizer, cfg: RunConfig, device) -> dict:
        gold, pred, sure = {}, {}, {}

        def digest(indices, batch, out):
            keep = batch["labels"] != -100
            chance, best = out.logits.float().softmax(-1).max(-1)
            rows = []
            for row, i in enumerate(indices):
                tags = batch["labels"][row][keep[row]].tolist()
                rows.append((i, tags, best[row][keep[row]].tolist(),
                             chance[row][keep[row]].min().item() if tags else None))
            return rows

        collate = self.collator(data.validation, tokenizer, cfg, train=False)
        loss, pieces = evaluate_batches(model, data.validation, collate,
                                        cfg.train.batch_size * 2, device, digest)
        for i, tags, guessed, least in (row for piece in pieces for row in piece):
            gold[i], pred[i], sure[i] = tags, guessed, least
        names = data.labels
        gold_tags = [[names[t] for t in gold[i]] for i in range(len(data.validation))]
        pred_tags = [[names[t] for t in pred[i]] for i in range(len(data.validation))]
        flat_gold = torch.tensor([t for row in gold.values() for t in row])
        flat_pred = torch.tensor([t for row in pred.values() for t in row])
        accuracy = float((flat_gold == flat_pred).float().mean()) if len(flat_gold) else 0.0
        from engine.tasks.review_rows import tag_results

        return {"loss": loss, "accuracy": accuracy, **entity_scores(gold_tags, pred_tags),
                "examples": tag_results(gold_tags, pred_tags,
                                        [sure[i] for i in range(len(data.validation))])}


# -- using a trained run: one sentence, a whole file, review ---------------------

def tag_sentence(predictor, text: str) -> Prediction:
    words = text.split()
    enc = predictor.tokenizer(words, is_split_into_words=True, truncation=True,
                              return_tensors="pt")
    logits = predictor.model(**predictor.on_device(enc)).logits[0].float().cpu()
    probs = logits.softmax(-1)
    tags, seen = [], set()
    for position, word in enumerate(enc.word_ids(0)):
        if word is None or word in seen:
            continue
        seen.add(word)
        best = int(probs[position].argmax())
        tags.append((words[word], predictor.model.config.id2label[best],
                     float(probs[position, best])))
    label = " ".join(f"{w}/{t}" for w, t, _ in tags)
    return Prediction(text, label, min((p for *_, p in tags), default=0.0),
                      {f"{i}:{w}": p for i, (w, _, p) in enumerate(tags)}, "tags")


def predict_tags(predictor, path: Path, cfg, column, batch_size: int, progress
                 ) -> FilePredictions:
    """Each row's words tagged (first sub-token of each word, as training labels them);
    words past data.max_length get no tag, as the run saw none."""
    import torch

    from engine.data.file_rows import read_rows
    from engine.data.loading import as_list, pick_column

    table = read_rows(path, encoding=cfg.data.encoding, role="data", conll=True)
    words_col = pick_column(table, path, column or cfg.data.text_column, "--column",
                            ("tokens", "words"))
    words = [[str(w) for w in as_list(v, path, words_col, i)]
             for i, v in enumerate(table[words_col])]
    names = predictor.model.config.id2label
    tags: list[list[str]] = [[] for _ in words]
    sure = [1.0] * len(words)
    order = sorted((i for i in range(len(words)) if words[i]), key=lambda i: -len(words[i]))
    with torch.inference_mode(), predictor.autocast():
        for chunk in batches(order, batch_size):
            enc = predictor.tokenizer(cut_texts([words[i] for i in chunk],
                                                cfg.data.max_length),
                                      is_split_into_words=True,
                                      truncation=True, max_length=cfg.data.max_length,
                                      padding=True, return_tensors="pt")
            logits = predictor.model(**predictor.on_device(enc)).logits.float()
            chance, best = (t.cpu() for t in logits.softmax(-1).max(-1))
            for row, i in enumerate(chunk):
                seen = set()
                for position, word in enumerate(enc.word_ids(row)):
                    if word is None or word in seen:
                        continue
                    seen.add(word)
                    tags[i].append(names[int(best[row, position])])
                    sure[i] = min(sure[i], float(chance[row, position]))
            if progress is not None:
                progress(len(chunk), len(order))
    tags_col = next((c for c in (cfg.data.label_column, "tags", "ner_tags", "labels")
                     if c in table.columns and c != words_col), None)
    out = table.frame()  # the rows as read, written out with the predictions added
    out["predicted"] = [" ".join(t) for t in tags]
    out["score"] = sure
    metric = None
    if tags_col is not None:
        gold = [[str(t) for t in as_list(v, path, tags_col, i)]
                for i, v in enumerate(table[tags_col])]
        padded = [t + ["O"] * (len(g) - len(t)) for t, g in zip(tags, gold, strict=True)]
        metric = ("f1", entity_scores(gold, padded)["f1"], len(gold))
    return FilePredictions(out, metric)


def tag_inputs(cfg) -> list[ExampleInput]:
    """Sentences (words joined by spaces) and their tags, as TokenTask.load_data reads
    them: rows without words left out."""
    from engine.data.loading import as_list, load_frames, pick_column

    spec = cfg.data
    _, val, path = load_frames(cfg, lambda p, role: read_conll(p, spec.encoding, role))
    words_col = pick_column(val, path, spec.text_column, "text_column", ("tokens", "words"))
    tags_col = pick_column(val, path, spec.label_column, "label_column",
                           ("tags", "ner_tags", "labels"))
    out = []
    for n, (i, words, tags) in enumerate(zip(val.index, val[words_col], val[tags_col],
                                             strict=True)):
        words = [str(w) for w in as_list(words, path, words_col, n)]
        if words:
            tags = [str(t) for t in as_list(tags, path, tags_col, n)]
            out.append(ExampleInput(" ".join(words), int(i) + 1, " ".join(tags), cut=True))
    return out
