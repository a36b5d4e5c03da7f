"""Extractive question answering: a start and an end position over the context.

Data is SQuAD JSON (`data` → `paragraphs` → `qas`), or a table with
`question`, `context` and `answers` (`{"text": [...], "answer_start": [...]}`)
or `answer_text` / `answer_start` columns. A context longer than
`data.max_length` is cut into overlapping windows (`data.doc_stride` tokens
shared); a window without the answer learns to point at the first token.
Predictions are mapped back to character spans of the context through the
tokenizer's offsets; metrics are SQuAD's exact match and token F1.
"""

from __future__ import annotations

import collections
import json
import re
import string
from pathlib import Path

import torch

from engine.core.config import RunConfig
from engine.core.errors import DataError
from engine.tasks.base import (
    FieldCollator,
    FieldExamples,
    Task,
    TaskData,
    evaluate_batches,
    load_auto_model,
    refuse_folder,
)
from engine.tasks.predictions import (
    PAIR_SEPARATOR,
    QA_SEPARATOR,
    ExampleInput,
    FilePredictions,
    Prediction,
    batches,
)

MAX_ANSWER_TOKENS = 30


def read_squad(path: Path, encoding: str = "utf-8", role: str = "training"):
    """SQuAD-format JSON, or a table read through `datasets` into Arrow as every head's
    data is, as rows of id, question, context, answers (`FileRows`,
    engine/data/file_rows.py)."""
    from engine.data.file_rows import FileRows, read_rows

    doc = squad_rows(path, encoding)
    if doc is not None:
        return FileRows({k: [r[k] for r in doc] for k in ("id", "question", "context",
                                                          "answers")})
    table = read_rows(path, encoding=encoding, role=role)
    return FileRows(with_answers({c: table[c] for c in table.columns}, path))


def squad_frame(path: Path, encoding: str = "utf-8", role: str = "data"):
    """`read_squad`'s rows as a pandas table, every column of the file kept: what batch
    prediction adds its answers to and writes out."""
    import pandas as pd

    from engine.data.file_rows import read_rows

    doc = squad_rows(path, encoding)
    if doc is not None:
        return pd.DataFrame(doc)
    rows = read_rows(path, encoding=encoding, role=role)
    columns = with_answers({c: rows[c] for c in rows.columns}, path)
    frame = rows.frame().assign(answers=columns["answers"])
    return frame if "id" in frame.columns else frame.assign(id=columns["id"])


def squad_rows(path: Path, encoding: str) -> list[dict] | None:
    """The questions of a SQuAD-format JSON file (data -> paragraphs -> qas); None when
    the file is not one (a table, or JSON lines, which the table reader reads)."""
    from engine.data.reader import text_encoding

    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    try:
        # The reader's codec: UTF-8 drops a byte-order mark, as for every data file.
        doc = json.loads(path.read_text(encoding=text_encoding(encoding)))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # perhaps JSON lines; let the table reader say what is wrong
    if not (isinstance(doc, dict) and "data" in doc):
        return None
    rows = []
    try:
        for article in doc["data"]:
            for para in article.get("paragraphs", []):
                for qa in para.get("qas", []):
                    rows.append({
                        "id": str(qa.get("id", len(rows))),
                        "question": str(qa["question"]),
                        "context": _text(para["context"]),
                        "answers": [(_text(a["text"]), int(a["answer_start"]))
                                    for a in qa.get("answers", [])],
                    })
    except (AttributeError, TypeError, KeyError, ValueError):
        raise DataError(
            f"{path} is not SQuAD-format JSON; it needs data -> paragraphs (each with "
            "a context) -> qas (each with a question and answers of text and "
            "answer_start).") from None
    if not rows:
        raise DataError(f"{path} holds no questions.")
    return rows


def with_answers(columns: dict[str, list], path: Path) -> dict[str, list]:
    """A table's columns (Python values) with its answers parsed into (text, start)
    pairs, from an answers column ({"text": [...], "answer_start": [...]}, or its JSON
    text) or answer_text and answer_start columns; an id column added where it has none."""
    for col in ("question", "context"):
        if col not in columns:
            raise DataError(f"{path} has no column {col!r}; question answering needs question, "
                            f"context and answers (its columns are "
                            f"{', '.join(map(str, columns))}).")
    if "answers" not in columns and not {"answer_text", "answer_start"} <= set(columns):
        raise DataError(f"{path} has no answers column (answers, or answer_text and "
                        "answer_start).")
    rows = len(columns["question"])
    answers = []
    for i in range(rows):
        try:
            if "answers" in columns:
                a = columns["answers"][i]
                if isinstance(a, str):
                    a = json.loads(a)
                texts = [_text(t) for t in a["text"]]
                starts = [int(s) for s in a["answer_start"]]
            else:
                texts = [str(columns["answer_text"][i])]
                starts = [int(columns["answer_start"][i])]
            answers.append(list(zip(texts, starts, strict=True)))
        except (TypeError, KeyError, ValueError, json.JSONDecodeError):
            raise DataError(
                f"{path} row {i + 1}: answers must look like {{\"text\": [...], "
                "\"answer_start\": [...]}} with one start per text.") from None
    out = {**columns, "answers": answers}
    return out if "id" in columns else {**out, "id": [str(i) for i in range(rows)]}


def _text(value) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, articles or extra spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def answer_f1(prediction: str, truth: str) -> float:
    p, t = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(p) & collections.Counter(t)
    same = sum(common.values())
    if not p or not t:
        return float(p == t)
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: list[str], answers: list[list[str]]) -> dict[str, float]:
    """Exact match and F1, each the best over an example's gold answers."""
    em = f1 = 0.0
    for pred, golds in zip(predictions, answers, strict=True):
        golds = golds or [""]
        em += max(float(normalize_answer(pred) == normalize_answer(g)) for g in golds)
        f1 += max(answer_f1(pred, g) for g in golds)
    n = max(1, len(predictions))
    return {"exact_match": em / n, "f1": f1 / n}


def encode_windows(tokenizer, questions, contexts, max_length: int, stride: int):
    return tokenizer(
        questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
        return_overflowing_tokens=True, return_offsets_mapping=True,
        return_attention_mask=False, padding=False,
    )


def best_span(start_logits, end_logits, offsets) -> tuple[float, int, int]:
    """(score, char start, char end) of the best valid span in one window."""
    best = (float("-inf"), 0, 0)
    top_s = torch.topk(start_logits, min(20, len(start_logits))).indices.tolist()
    top_e = torch.topk(end_logits, min(20, len(end_logits))).indices.tolist()
    for s in top_s:
        for e in top_e:
            if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > MAX_ANSWER_TOKENS:
                continue
            score = float(start_logits[s] + end_logits[e])
            if score > best[0]:
                best = (score, offsets[s][0], offsets[e][1])
    return best


def check_qa_setup(cfg: RunConfig, tokenizer) -> None:
    """A fast tokenizer (offsets map answers to tokens) and windows that move forward."""
    spec = cfg.data
    if not getattr(tokenizer, "is_fast", False):
        from engine.core.errors import ModelError

        raise ModelError(f"Question answering needs a fast tokenizer (for offsets); "
                         f"{cfg.model.id} has only a slow one.")
    if spec.doc_stride * 2 >= spec.max_length:
        from engine.core.errors import ConfigError

        raise ConfigError(f"data.doc_stride ({spec.doc_stride}) must be under half of "
                          f"data.max_length ({spec.max_length}) so windows move forward.")


def check_answers(frame, where) -> None:
    """Every answer is where its answer_start says in its context."""
    for i, (context, answers) in enumerate(zip(frame["context"], frame["answers"],
                                               strict=True)):
        for text, start in answers:
            if str(context)[start:start + len(text)] != text:
                raise DataError(
                    f"{where}: answer {text!r} of question {i + 1} is not at character "
                    f"{start} of its context; fix answer_start.")


def qa_extra(val) -> dict:
    """What evaluation reads beyond the windows: the validation contexts and answers."""
    return {"contexts": [str(c) for c in val["context"]],
            "answers": [[t for t, _ in a] for a in val["answers"]]}


def qa_examples(tokenizer, frame, spec, training: bool) -> FieldExamples:
    """Question/context windows with the answer's token span (0, 0 where the window does
    not hold it); validation windows also keep their question and character offsets."""
    from engine.data.loading import check_stop

    questions = [str(q).lstrip() for q in frame["question"]]
    contexts = [str(c) for c in frame["context"]]
    check_stop()
    enc = encode_windows(tokenizer, questions, contexts, spec.max_length, spec.doc_stride)
    starts, ends, owners, offsets = [], [], [], []
    all_answers = list(frame["answers"])
    for w in range(len(enc["input_ids"])):
        example = enc["overflow_to_sample_mapping"][w]
        seq = enc.sequence_ids(w)
        window_offsets = [o if s == 1 else None
                          for o, s in zip(enc["offset_mapping"][w], seq, strict=True)]
        s_tok = e_tok = 0
        answers = all_answers[example]
        if answers:
            text, char_start = answers[0]
            char_end = char_start + len(text)
            inside = [i for i, o in enumerate(window_offsets) if o is not None]
            if (inside and window_offsets[inside[0]][0] <= char_start
                    and window_offsets[inside[-1]][1] >= char_end):
                s_tok = next(i for i in inside if window_offsets[i][1] > char_start)
                e_tok = next(i for i in reversed(inside) if window_offsets[i][0] < char_end)
        starts.append(s_tok)
        ends.append(e_tok)
        owners.append(example)
        offsets.append(window_offsets)
    fields = {"input_ids": enc["input_ids"], "start_positions": starts,
              "end_positions": ends}
    if "token_type_ids" in enc:
        fields["token_type_ids"] = enc["token_type_ids"]
    examples = FieldExamples(fields, [len(x) for x in enc["input_ids"]])
    if not training:
        examples.owners, examples.offsets = owners, offsets
    return examples


class QATask(Task):
    metrics = ("loss", "exact_match", "f1")
    auto_class = "AutoModelForQuestionAnswering"
    pipeline_tag = "question-answering"
    input_kind = f"'QUESTION {QA_SEPARATOR} CONTEXT'"

    # -- using a trained run ------------------------------------------------------

    def predict(self, predictor, inputs):
        return [answer(predictor, text) for text in inputs]

    def predict_file(self, predictor, cfg: RunConfig, path: Path, column, batch_size: int,
                     progress):
        refuse_folder(path)
        return predict_answers(predictor, path, cfg, batch_size, progress)

    def file_review_inputs(self, cfg: RunConfig):
        return question_inputs(cfg)

    # -- training -----------------------------------------------------------------

    def load_data(self, cfg: RunConfig, tokenizer) -> TaskData:
        from engine.core.config import is_hub_data
        from engine.data.loading import load_frames

        spec = cfg.data
        check_qa_setup(cfg, tokenizer)
        if is_hub_data(spec.train):
            from engine.tasks.hub_qa import read_hub_qa

            hub = read_hub_qa(cfg)
            check_answers(hub.train, hub.read.train_where)
            check_answers(hub.validation, hub.read.val_where)
            return hub.task_data(cfg, qa_examples(tokenizer, hub.train, spec, True),
                                 qa_examples(tokenizer, hub.validation, spec, False),
                                 qa_extra(hub.validation))
        train, val, _ = load_frames(cfg, lambda p, role: read_squad(p, spec.encoding, role))
        check_answers(train, spec.train)
        check_answers(val, spec.validation or spec.train)
        return TaskData(qa_examples(tokenizer, train, spec, True),
                        qa_examples(tokenizer, val, spec, False), extra=qa_extra(val))

    def build(self, cfg: RunConfig, path: Path, data: TaskData):
        return load_auto_model("AutoModelForQuestionAnswering", self, cfg, path,
                               "it needs an encoder such as BERT, RoBERTa or DistilBERT.")

    def collator(self, examples, tokenizer, cfg: RunConfig, *, train: bool):
        return FieldCollator(examples, {"input_ids": self.pad_id(tokenizer)})

    def evaluate(self, model, data: TaskData, tokenizer, cfg: RunConfig, device) -> dict:
        val = data.validation
        best: dict[int, tuple[float, int, int]] = {}

        def digest(indices, batch, out):
            spans = []
            for row, w in enumerate(indices):
                n = len(val.fields["input_ids"][w])
                spans.append((val.owners[w], best_span(out.start_logits[row, :n].float().cpu(),
                                                       out.end_logits[row, :n].float().cpu(),
                                                       val.offsets[w])))
            return spans

        collate = self.collator(val, tokenizer, cfg, train=False)
        loss, pieces = evaluate_batches(model, val, collate, cfg.train.batch_size * 2, device,
                                        digest)
        for owner, span in (found for piece in pieces for found in piece):
            if owner not in best or span[0] > best[owner][0]:  # a question's best window
                best[owner] = span
        contexts = data.extra["contexts"]
        predictions = [contexts[i][best[i][1]:best[i][2]] if i in best else ""
                       for i in range(len(contexts))]
        from engine.tasks.review_rows import answer_results

        # Per question; the span score is a logit sum, not a probability: no confidence.
        return {"loss": loss, **squad_scores(predictions, data.extra["answers"]),
                "examples": answer_results(predictions, data.extra["answers"],
                                           [None] * len(predictions), answer_f1,
                                           normalize_answer)}


# -- using a trained run: one question, a whole file, review ---------------------

def answer(predictor, text: str) -> Prediction:
    question, sep, context = text.partition(QA_SEPARATOR)
    if not sep:
        raise DataError(f"A question-answering input is 'QUESTION {QA_SEPARATOR} CONTEXT'; "
                        f"{text[:40]!r} has no {QA_SEPARATOR}.")
    question, context = question.strip(), context.strip()
    if not question or not context:
        missing = "question" if not question else "context"
        raise DataError(f"The {missing} of {text[:40]!r} is empty; a question-answering "
                        f"input is 'QUESTION {QA_SEPARATOR} CONTEXT'.")
    enc = predictor.tokenizer(question, context, truncation="only_second", max_length=384,
                              stride=64, return_overflowing_tokens=True,
                              return_offsets_mapping=True, padding=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping").tolist()
    enc.pop("overflow_to_sample_mapping", None)
    out = predictor.model(**predictor.on_device(enc))
    starts, ends = out.start_logits.float().cpu(), out.end_logits.float().cpu()
    best = (float("-inf"), 0, 0)
    for w in range(len(offsets)):
        seq = enc.sequence_ids(w)
        window = [tuple(o) if s == 1 else None for o, s in zip(offsets[w], seq, strict=True)]
        span = best_span(starts[w], ends[w], window)
        best = max(best, span)
    return Prediction(text, context[best[1]:best[2]], best[0], shown_as="answer")


def question_table(path: Path, cfg):
    """Questions from SQuAD JSON or a table, as a pandas table (what batch prediction adds
    its answers to and writes out); answers are optional here."""
    from engine.data.file_rows import read_rows

    if path.suffix.lower() == ".json":
        return squad_frame(path, cfg.data.encoding, "data")
    table = read_rows(path, encoding=cfg.data.encoding, role="data")
    if {"answers"} & set(table.columns) or {"answer_text", "answer_start"} <= set(table.columns):
        return squad_frame(path, cfg.data.encoding, "data")
    for col in ("question", "context"):
        if col not in table.columns:
            raise DataError(f"{path} has no column {col!r}; question answering needs question "
                            f"and context (its columns are {', '.join(map(str, table.columns))}).")
    return table.frame()


def predict_answers(predictor, path: Path, cfg, batch_size: int, progress
                    ) -> FilePredictions:
    """The best span of each question's context, over its windows (data.doc_stride)."""
    import torch

    table = question_table(path, cfg)
    questions = [str(q).lstrip() for q in table["question"]]
    contexts = [str(c) for c in table["context"]]
    best: dict[int, tuple[float, int, int]] = {}
    with torch.inference_mode(), predictor.autocast():
        for chunk in batches(list(range(len(questions))), batch_size):
            enc = predictor.tokenizer(
                [questions[i] for i in chunk], [contexts[i] for i in chunk],
                truncation="only_second", max_length=cfg.data.max_length,
                stride=cfg.data.doc_stride, return_overflowing_tokens=True,
                return_offsets_mapping=True, padding=True, return_tensors="pt")
            offsets = enc.pop("offset_mapping").tolist()
            owners = enc.pop("overflow_to_sample_mapping").tolist()
            out = predictor.model(**predictor.on_device(enc))
            starts, ends = out.start_logits.float().cpu(), out.end_logits.float().cpu()
            for w, owner in enumerate(owners):
                window = [tuple(o) if s == 1 else None
                          for o, s in zip(offsets[w], enc.sequence_ids(w), strict=True)]
                span = best_span(starts[w], ends[w], window)
                i = chunk[owner]
                if i not in best or span[0] > best[i][0]:
                    best[i] = span
            if progress is not None:
                progress(len(chunk), len(questions))
    answers = [contexts[i][best[i][1]:best[i][2]] if i in best else ""
               for i in range(len(questions))]
    out = table.copy()
    out["predicted"] = answers
    out["score"] = [best[i][0] if i in best else float("nan") for i in range(len(questions))]
    metric = None
    if "answers" in table.columns:
        golds = [[t for t, _ in a] for a in table["answers"]]
        have = [i for i, g in enumerate(golds) if g]
        if have:
            f1 = squad_scores([answers[i] for i in have], [golds[i] for i in have])["f1"]
            metric = ("f1", f1, len(have))
    return FilePredictions(out, metric)


def question_inputs(cfg) -> list[ExampleInput]:
    """'question ||| context' per question, with its gold answers."""
    from engine.data.loading import load_frames
    spec = cfg.data
    _, val, _ = load_frames(cfg, lambda p, role: read_squad(p, spec.encoding, role))
    out = []
    for i, q, c, answers in zip(val.index, val["question"], val["context"], val["answers"],
                                strict=True):
        golds = tuple(t for t, _ in answers)
        out.append(ExampleInput(str(q).lstrip() + PAIR_SEPARATOR + str(c), int(i) + 1,
                                golds[0] if golds else "", golds))
    return out
