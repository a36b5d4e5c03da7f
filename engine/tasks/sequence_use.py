"""Using a trained sequence head (engine.tasks.sequence): its saved model loaded, one text
(or a batch of texts) predicted, a whole file predicted and scored, and its validation
examples re-read for review.

`kind` is the head's label kind (`SequenceTask.label_kind`): 'single_label',
'multi_label' or 'regression' (`data_kind`: the same as the data readers name it); an
embedding run has its own `embed`.
"""

from __future__ import annotations

from pathlib import Path

from engine.core.errors import DataError
from engine.data.text_cells import cut_texts
from engine.tasks.predictions import (
    PAIR_SEPARATOR,
    PROBABILITY_COLUMNS_UP_TO,
    ExampleInput,
    FilePredictions,
    Prediction,
)


def load_sequence_model(predictor, kind: str) -> None:
    """hubtune's `SequenceClassifier` from a saved run folder (model.safetensors)."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from engine.modeling.loading import MASTER_DTYPE, SequenceClassifier

    head = predictor.head
    backbone = AutoModel.from_config(AutoConfig.from_pretrained(predictor.dir),
                                     dtype=MASTER_DTYPE)
    if head["pooling"] != "pooler" and getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None
    labels = predictor.labels
    predictor.model = SequenceClassifier(
        backbone, len(labels) if kind != "regression" and labels else 1,
        pooling=head["pooling"], dropout=0.0, problem_type=kind,
        custom_hidden=head.get("custom_hidden"),
    )
    load_model(predictor.model, str(predictor.dir / "model.safetensors"))
    predictor.tokenizer = AutoTokenizer.from_pretrained(predictor.dir)


def embed(predictor, texts: list[str]) -> list[Prediction]:
    enc = predictor.tokenizer(cut_texts(texts, 512), truncation=True, max_length=512,
                              padding=True, return_tensors="pt")
    enc = predictor.on_device(enc)
    vectors = predictor.model.pool(enc["input_ids"], enc["attention_mask"],
                                   enc.get("token_type_ids")).float().cpu()
    return [Prediction(text, None, float(v.norm()),
                       {f"dim{i}": float(x) for i, x in enumerate(v.tolist())}, "vector")
            for text, v in zip(texts, vectors, strict=True)]


def classify(predictor, texts: list[str], kind: str) -> list[Prediction]:
    import torch

    enc = predictor.tokenizer(cut_texts(texts, 512), truncation=True, max_length=512,
                              padding=True, return_tensors="pt")
    enc = predictor.on_device(enc)
    _, logits = predictor.model(input_ids=enc["input_ids"],
                                attention_mask=enc["attention_mask"],
                                token_type_ids=enc.get("token_type_ids"))
    logits = logits.float().cpu()
    out = []
    for text, row in zip(texts, logits, strict=True):
        if kind == "regression":
            out.append(Prediction(text, None, float(row[0]), {}, "value"))
            continue
        multi = kind == "multi_label"
        probs = (torch.sigmoid(row) if multi else torch.softmax(row, -1)).tolist()
        scores = dict(zip(predictor.labels, probs, strict=True))
        if multi:
            chosen = [n for n, p in scores.items() if p >= 0.5]
            label = ", ".join(chosen) if chosen else "(none)"
            score = min((scores[n] for n in chosen), default=1 - max(probs))
            out.append(Prediction(text, label, score, scores))
            continue
        best = max(scores, key=scores.get)
        out.append(Prediction(text, best, scores[best], scores))
    return out


def score_batches(predictor, kind: str, texts: list[str], pairs: list[str] | None = None, *,
                  batch_size: int = 32, max_length: int = 512, progress=None):
    """Probabilities (N x labels; the value for regression) of a sequence head for many
    texts: batches of similar length, in input order on return."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = None
    with torch.inference_mode(), predictor.autocast():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            enc = predictor.tokenizer(cut_texts([texts[i] for i in chunk], max_length),
                                      cut_texts([pairs[i] for i in chunk], max_length)
                                      if pairs else None,
                                      truncation=True, max_length=max_length, padding=True,
                                      return_tensors="pt")
            enc = predictor.on_device(enc)
            _, logits = predictor.model(input_ids=enc["input_ids"],
                                        attention_mask=enc["attention_mask"],
                                        token_type_ids=enc.get("token_type_ids") if pairs
                                        else None)
            logits = logits.float().cpu()
            probs = (logits if kind == "regression" else torch.sigmoid(logits)
                     if kind == "multi_label" else torch.softmax(logits, -1))
            if out is None:
                out = torch.empty(len(texts), probs.shape[-1])
            out[torch.tensor(chunk)] = probs
            if progress is not None:
                progress(len(chunk), len(texts))
    return out if out is not None else torch.empty(0, max(1, len(predictor.labels)))


def readable(outputs, labels: list[str], kind: str) -> tuple[list[str], list[float]]:
    """(predicted label, its score) per row of `score_batches`' output (or an image head's
    probabilities)."""
    import torch

    if kind == "regression":
        values = outputs[:, 0].tolist()
        return [f"{v:.6g}" for v in values], values
    if kind == "multi_label":
        on = (outputs >= 0.5).tolist()
        names = [", ".join(n for n, o in zip(labels, row, strict=True) if o) for row in on]
        # The least sure of the per-label decisions, as in the playground.
        sure = torch.maximum(outputs, 1 - outputs).min(-1).values.tolist()
        return names, sure
    score, best = outputs.max(-1)
    return [labels[i] for i in best.tolist()], score.tolist()


def file_metric(kind: str, labels: list, predicted: list, outputs
                ) -> tuple[str, float, int] | None:
    """The run's main metric over the rows that have a label: accuracy (subset accuracy
    for multi-label) or mse."""
    from engine.data.loading import is_missing_label, label_set, label_text

    have = [i for i, v in enumerate(labels) if not is_missing_label(v)]
    if not have:
        return None
    if kind == "regression":
        errors = [(float(outputs[i, 0]) - float(labels[i])) ** 2 for i in have]
        return "mse", sum(errors) / len(errors), len(have)
    if kind == "multi_label":
        right = [label_set(labels[i]) == set(filter(None, predicted[i].split(", ")))
                 for i in have]
    else:
        right = [label_text(labels[i]) == predicted[i] for i in have]
    return "accuracy", sum(right) / len(have), len(have)


def predict_text_file(predictor, kind: str, cfg, path: Path, column: str | None,
                      batch_size: int, progress) -> FilePredictions:
    """Each row's text (and pair) scored; `p_<label>` columns for a few classes."""
    from engine.data.file_rows import read_rows
    from engine.data.loading import _text

    if path.is_dir():
        raise DataError(f"{path} is a folder; give a CSV, TSV, JSONL or Parquet file.")
    table = read_rows(path, encoding=cfg.data.encoding, role="data")
    columns = table.columns
    text_col = column or cfg.data.text_column
    pair_col = cfg.data.text_pair_column
    for wanted, what in ((text_col, "--column"), (pair_col, "data.text_pair_column")):
        if wanted is not None and wanted not in columns:
            raise DataError(f"{path} has no column {wanted!r} ({what}); its columns are "
                            f"{', '.join(columns)}.")
    texts = [_text(v) for v in table[text_col]]
    pairs = [_text(v) for v in table[pair_col]] if pair_col else None
    outputs = score_batches(predictor, kind, texts, pairs, batch_size=batch_size,
                            max_length=cfg.data.max_length, progress=progress)
    out = table.frame()  # the rows as read, written out with the predictions added
    predicted, score = readable(outputs, predictor.labels, kind)
    out["predicted"], out["score"] = predicted, score
    if kind != "regression" and len(predictor.labels) <= PROBABILITY_COLUMNS_UP_TO:
        for i, name in enumerate(predictor.labels):
            out[f"p_{name}"] = outputs[:, i].tolist()
    metric = None
    label_col = cfg.data.label_column
    if label_col in columns and label_col not in (text_col, pair_col):
        metric = file_metric(kind, table[label_col], predicted, outputs)
    return FilePredictions(out, metric)


# -- review ---------------------------------------------------------------------

def label_texts(kind: str, targets: list, names: tuple[str, ...]) -> list[str]:
    """Sequence-head targets (class indices, multi-hot rows or numbers) as the per-example
    results write their labels."""
    if kind == "regression":
        return [f"{float(v):.6g}" for v in targets]
    if kind == "multi_label":
        return [", ".join(n for n, on in zip(names, hot, strict=True) if on) or "(none)"
                for hot in targets]
    return [names[i] for i in targets]


def text_inputs(cfg, kind: str, data_kind: str) -> list[ExampleInput]:
    from engine.data.loading import _labelled_splits, _text

    spec = cfg.data
    _, (frame, labels), names, _ = _labelled_splits(cfg, [], data_kind)
    texts = [_text(v) for v in frame[spec.text_column]]
    if spec.text_pair_column:
        texts = [t + PAIR_SEPARATOR + _text(p)
                 for t, p in zip(texts, frame[spec.text_pair_column], strict=True)]
    shown = label_texts(kind, labels, names)
    return [ExampleInput(t, int(i) + 1, label)
            for i, t, label in zip(frame.index, texts, shown, strict=True)]


def hub_text_inputs(cfg, kind: str, data_kind: str) -> list[ExampleInput]:
    """A sequence head's validation rows of an `hf:` dataset, read as its run read them
    (from the cache: nothing is downloaded again)."""
    from engine.data.hub.splits import encode_labels
    from engine.data.hub.text import _as_text, hub_text_splits
    from engine.tasks.hub_data import hub_splits

    splits = hub_splits(cfg)
    rows = hub_text_splits(cfg, splits.train, splits.validation, kind=data_kind)
    text, pair, label = rows.columns
    val = rows.validation
    texts = [_as_text(v) for v in val[text]]
    if pair is not None:
        texts = [t + PAIR_SEPARATOR + _as_text(p) for t, p in zip(texts, val[pair], strict=True)]
    targets = encode_labels(list(val[label]), rows.lmap, rows.val_where, label)
    shown = label_texts(kind, targets, rows.lmap.names)
    return [ExampleInput(t, None, label) for t, label in zip(texts, shown, strict=True)]
