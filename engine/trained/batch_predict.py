"""`hubtune predict ID --file` for the tasks whose inputs are not one text column: image
folders (or a table of image paths), token classification, question answering and
seq2seq. Each reads its file with the rules training used (engine.trained.predict.predict_file
handles the sequence heads), predicts in batches with `progress(rows, total)` after each,
and scores the run's main metric when the file carries labels.

Plain Python + torch; never prints, never imports the store or textual.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.core.errors import DataError
from engine.data.text_cells import cut_texts

PROBABILITY_COLUMNS_UP_TO = 20
"""Up to this many classes OUT gets a `p_<label>` column per class; above it only `score`."""


@dataclass
class FilePredictions:
    table: object
    """The input rows in their order, with `predicted`, `score` (and `p_<label>`) added."""
    metric: tuple[str, float, int] | None
    """(name, value, labelled rows) when the file has the run's label column."""
    notes: tuple[str, ...] = ()
    """What the user should know about how the file was read (an encoding guessed)."""


def file_metric(task: str, labels: list, predicted: list, outputs) -> tuple[str, float, int] | None:
    """The run's main metric over the rows that have a label: accuracy (subset accuracy
    for multi-label) or mse."""
    from engine.data.loading import is_missing_label, label_set, label_text

    have = [i for i, v in enumerate(labels) if not is_missing_label(v)]
    if not have:
        return None
    if task == "regression":
        errors = [(float(outputs[i, 0]) - float(labels[i])) ** 2 for i in have]
        return "mse", sum(errors) / len(errors), len(have)
    if task == "multi-label-classification":
        right = [label_set(labels[i]) == set(filter(None, predicted[i].split(", ")))
                 for i in have]
    else:
        right = [label_text(labels[i]) == predicted[i] for i in have]
    return "accuracy", sum(right) / len(have), len(have)


def _batches(order: list[int], size: int):
    for start in range(0, len(order), size):
        yield order[start:start + size]


def predict_other_file(predictor, cfg, path: Path, column, batch_size: int, progress):
    """engine.trained.predict.predict_file for images, tags, answers and generated text."""
    if not path.exists():
        raise DataError(f"{path} does not exist.")
    if predictor.task == "image-classification":
        table, probs, label_col = predict_images(predictor, path, cfg, column, batch_size,
                                                 progress)
        out = table.copy()
        predicted, score = predictor.readable(probs)
        out["predicted"], out["score"] = predicted, score
        if len(predictor.labels) <= PROBABILITY_COLUMNS_UP_TO:
            for i, name in enumerate(predictor.labels):
                out[f"p_{name}"] = probs[:, i].tolist()
        metric = (file_metric(predictor.task, list(table[label_col]), predicted, probs)
                  if label_col is not None else None)
        return FilePredictions(out, metric)
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a data file.")
    if predictor.task == "token-classification":
        return FilePredictions(*predict_tags(predictor, path, cfg, column, batch_size,
                                             progress))
    if predictor.task == "question-answering":
        return FilePredictions(*predict_answers(predictor, path, cfg, batch_size, progress))
    return FilePredictions(*predict_texts(predictor, path, cfg, column, batch_size,
                                          progress))


# -- images -------------------------------------------------------------------

def image_table(path: Path, cfg, column: str | None):
    """(table with a `path` column and maybe `label`) of an image folder with one folder
    per class, a folder of images, or a CSV/TSV/JSONL/Parquet of paths (relative to it)."""
    import pandas as pd

    from engine.data.loading import label_text, pick_column, read_table
    from engine.tasks.image import IMAGE_SUFFIXES, scan_images

    if path.is_dir():
        if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
            paths, labels = scan_images(path)
            return pd.DataFrame({"path": [str(p) for p in paths], "label": labels}), "label"
        paths = sorted(str(p) for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise DataError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        return pd.DataFrame({"path": paths}), None
    table = read_table(path, encoding=cfg.data.encoding, role="data")
    path_col = pick_column(table, path, column or cfg.data.text_column, "--column",
                           ("path", "image", "file", "filename"))
    table = table.assign(**{path_col: [str(p if (p := Path(str(v))).is_absolute()
                                           else path.parent / p) for v in table[path_col]]})
    label_col = next((c for c in (cfg.data.label_column, "label", "class")
                      if c in table.columns and c != path_col), None)
    if label_col is not None:
        table[label_col] = [None if v is None or v != v else label_text(v)
                            for v in table[label_col]]
    return table.rename(columns={path_col: "path"}), label_col


def predict_images(predictor, path: Path, cfg, column, batch_size: int, progress):
    import torch
    from PIL import Image, UnidentifiedImageError

    table, label_col = image_table(path, cfg, column)
    paths = list(table["path"])
    probs = torch.empty(len(paths), len(predictor.labels))
    with torch.inference_mode(), predictor.autocast():
        for chunk in _batches(list(range(len(paths))), batch_size):
            pixels = []
            for i in chunk:
                try:
                    with Image.open(paths[i]) as img:
                        pixels.append(predictor.transform(img.convert("RGB")))
                except FileNotFoundError:
                    raise DataError(f"Image {paths[i]} does not exist.") from None
                except (UnidentifiedImageError, OSError):
                    raise DataError(f"{paths[i]} is not an image hubtune can read; remove it "
                                    "from the folder or the list.") from None
            out = predictor.model(pixel_values=torch.stack(pixels).to(predictor.device))
            logits = out[1] if isinstance(out, tuple) else out.logits
            probs[torch.tensor(chunk)] = torch.softmax(logits.float(), -1).cpu()
            if progress is not None:
                progress(len(chunk), len(paths))
    return table, probs, label_col


# -- token classification -----------------------------------------------------

def predict_tags(predictor, path: Path, cfg, column, batch_size: int, progress):
    """Each row's words tagged (first sub-token of each word, as training labels them);
    words past data.max_length get no tag, as the run saw none."""
    import torch

    from engine.data.loading import as_list, pick_column
    from engine.tasks.token import read_conll

    table = read_conll(path, cfg.data.encoding, "data")
    words_col = pick_column(table, path, column or cfg.data.text_column, "--column",
                            ("tokens", "words"))
    words = [[str(w) for w in as_list(v, path, words_col, i)]
             for i, v in enumerate(table[words_col])]
    names = predictor.model.config.id2label
    tags: list[list[str]] = [[] for _ in words]
    sure = [1.0] * len(words)
    order = sorted((i for i in range(len(words)) if words[i]), key=lambda i: -len(words[i]))
    with torch.inference_mode(), predictor.autocast():
        for chunk in _batches(order, batch_size):
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
    out = table.copy()
    out["predicted"] = [" ".join(t) for t in tags]
    out["score"] = sure
    metric = None
    if tags_col is not None:
        from engine.tasks.token import entity_scores

        gold = [[str(t) for t in as_list(v, path, tags_col, i)]
                for i, v in enumerate(table[tags_col])]
        padded = [t + ["O"] * (len(g) - len(t)) for t, g in zip(tags, gold, strict=True)]
        metric = ("f1", entity_scores(gold, padded)["f1"], len(gold))
    return out, metric


# -- question answering -------------------------------------------------------

def question_table(path: Path, cfg):
    """Questions from SQuAD JSON or a table; answers are optional here."""
    from engine.data.loading import read_table
    from engine.tasks.qa import read_squad

    if path.suffix.lower() == ".json":
        return read_squad(path, cfg.data.encoding, "data")
    table = read_table(path, encoding=cfg.data.encoding, role="data")
    if {"answers"} & set(table.columns) or {"answer_text", "answer_start"} <= set(table.columns):
        return read_squad(path, cfg.data.encoding, "data")
    for col in ("question", "context"):
        if col not in table.columns:
            raise DataError(f"{path} has no column {col!r}; question answering needs question "
                            f"and context (its columns are {', '.join(map(str, table.columns))}).")
    return table


def predict_answers(predictor, path: Path, cfg, batch_size: int, progress):
    """The best span of each question's context, over its windows (data.doc_stride)."""
    import torch

    from engine.tasks.qa import best_span, squad_scores

    table = question_table(path, cfg)
    questions = [str(q).lstrip() for q in table["question"]]
    contexts = [str(c) for c in table["context"]]
    best: dict[int, tuple[float, int, int]] = {}
    with torch.inference_mode(), predictor.autocast():
        for chunk in _batches(list(range(len(questions))), batch_size):
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
    return out, metric


# -- seq2seq --------------------------------------------------------------------

def predict_texts(predictor, path: Path, cfg, column, batch_size: int, progress):
    """Greedy generation for each source (data.source_prefix, data.max_length,
    data.max_target_length as in evaluation); chrF against a target column if any."""
    import torch

    from engine.data.loading import pick_column, read_table
    from engine.tasks.seq2seq import TARGET_NAMES

    spec = cfg.data
    table = read_table(path, encoding=spec.encoding, role="data")
    source_col = pick_column(table, path, column or spec.text_column, "--column",
                             ("source", "src", "document", "input"))
    sources = [spec.source_prefix + ("" if v is None or v != v else str(v))
               for v in table[source_col]]
    texts = [""] * len(sources)
    order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))
    with torch.inference_mode(), predictor.autocast():
        for chunk in _batches(order, batch_size):
            enc = predictor.tokenizer(cut_texts([sources[i] for i in chunk], spec.max_length),
                                      truncation=True,
                                      max_length=spec.max_length, padding=True,
                                      return_tensors="pt")
            generated = predictor.model.generate(**predictor.on_device(enc),
                                                 max_new_tokens=spec.max_target_length,
                                                 num_beams=1, do_sample=False)
            for i, text in zip(chunk, predictor.tokenizer.batch_decode(
                    generated, skip_special_tokens=True), strict=True):
                texts[i] = text.strip()
            if progress is not None:
                progress(len(chunk), len(sources))
    out = table.copy()
    out["predicted"] = texts
    target_col = next((c for c in (spec.label_column, *TARGET_NAMES)
                       if c in table.columns and c != source_col), None)
    metric = None
    if target_col is not None:
        import sacrebleu

        have = [i for i, v in enumerate(table[target_col]) if isinstance(v, str)]
        if have:
            score = sacrebleu.corpus_chrf([texts[i] for i in have],
                                          [[table[target_col].iloc[i] for i in have]]).score
            metric = ("chrf", score, len(have))
    return out, metric
