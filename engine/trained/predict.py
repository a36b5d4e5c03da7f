"""Running a trained run's model on new input (the playground and `hubtune predict`).

One `Predictor` per saved model folder; what an input is depends on the
task: text for classification and the language models, words for token
classification, `question` plus `context` for QA, an image path for image
classification.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.core.errors import DataError, HubtuneError, ModelError
from engine.data.text_cells import cut_texts
from engine.trained.batch_predict import PROBABILITY_COLUMNS_UP_TO, FilePredictions, file_metric

QA_SEPARATOR = "|||"
"""`hubtune predict ID "question ||| context"`: how a QA input is written on one line."""


INPUT_KINDS = {
    "image-classification": "the path of an image",
    "token-classification": "a sentence",
    "question-answering": f"'QUESTION {QA_SEPARATOR} CONTEXT'",
    "masked-lm": "text with the mask token in it",
}
"""What one input is, per task, for the message refusing an empty one (default: text)."""


@dataclass(frozen=True)
class Prediction:
    text: str
    label: str | None
    """The most likely label, answer, generated text or fill; None for regression."""
    score: float
    """Its probability (or span score), or the predicted value for regression."""
    scores: dict[str, float] = field(default_factory=dict)
    """Every label's probability (classification) or the top fills (masked LM)."""


class Predictor:
    """A trained model loaded once, for many inputs, on `placement`'s device and in its
    precision (`engine.training.inference`; default: the CPU in float32)."""

    def __init__(self, model_dir: Path, placement=None) -> None:
        import torch

        from engine.modeling.loading import quiet_transformers

        quiet_transformers()
        self.dir = Path(model_dir)
        head_file = self.dir / "hubtune_head.json"
        if not head_file.is_file():
            raise ModelError(f"{model_dir} holds no trained hubtune model (no "
                             "hubtune_head.json); only completed runs have one.")
        self.head = json.loads(head_file.read_text(encoding="utf-8"))
        self.labels = self.head["labels"]
        self.task = self.head["task"]
        self.torch = torch
        loader = {
            "token-classification": "AutoModelForTokenClassification",
            "question-answering": "AutoModelForQuestionAnswering",
            "masked-lm": "AutoModelForMaskedLM",
            "causal-lm": "AutoModelForCausalLM",
            "seq2seq": "AutoModelForSeq2SeqLM",
        }.get(self.task)
        if self.task == "image-classification":
            self._load_image_model()
        elif loader is not None:
            import transformers

            from engine.modeling.loading import MASTER_DTYPE

            self.model = getattr(transformers, loader).from_pretrained(self.dir,
                                                                       dtype=MASTER_DTYPE)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.dir)
        else:
            self._load_sequence_model()
        self.model.eval()
        from engine.training.inference import CPU

        self.placement = placement or CPU
        self.device = torch.device(self.placement.device)
        self.placement.prepare(self.model)

    def autocast(self):
        """The precision context every forward pass runs under (the run's, on this device)."""
        return self.placement.autocast()

    def on_device(self, batch) -> dict:
        """A tokenizer's (or collator's) tensors on the model's device."""
        return {k: v.to(self.device) if hasattr(v, "to") else v for k, v in batch.items()}

    def _load_sequence_model(self) -> None:
        from safetensors.torch import load_model
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        from engine.modeling.loading import MASTER_DTYPE, SequenceClassifier
        from engine.tasks.evaluate import label_kind

        backbone = AutoModel.from_config(AutoConfig.from_pretrained(self.dir),
                                         dtype=MASTER_DTYPE)
        if self.head["pooling"] != "pooler" and getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None
        kind = label_kind(self.task)
        self.model = SequenceClassifier(
            backbone, len(self.labels) if kind != "regression" and self.labels else 1,
            pooling=self.head["pooling"], dropout=0.0, problem_type=kind,
            custom_hidden=self.head.get("custom_hidden"),
        )
        load_model(self.model, str(self.dir / "model.safetensors"))
        self.tokenizer = AutoTokenizer.from_pretrained(self.dir)

    def _load_image_model(self) -> None:
        from engine.tasks.image import TorchvisionClassifier, image_transforms

        image = self.head["image"]
        self.transform = image_transforms(image["size"], image["mean"], image["std"],
                                          augment=False)
        if self.head.get("arch"):
            from safetensors.torch import load_model

            self.model = TorchvisionClassifier(self.head["arch"], len(self.labels))
            load_model(self.model, str(self.dir / "model.safetensors"))
        else:
            from transformers import AutoModelForImageClassification

            from engine.modeling.loading import MASTER_DTYPE

            self.model = AutoModelForImageClassification.from_pretrained(
                self.dir, dtype=MASTER_DTYPE)

    def predict(self, inputs: list[str]) -> list[Prediction]:
        """One prediction per input, in order; an empty input is a DataError."""
        if not inputs:
            return []
        for number, text in enumerate(inputs, 1):
            if not isinstance(text, str) or not text.strip():
                which = f"Input {number}" if len(inputs) > 1 else "The input"
                raise DataError(f"{which} is empty; give {INPUT_KINDS.get(self.task, 'text')} "
                                "to predict on.")
        with self.torch.no_grad(), self.autocast():
            if self.task == "image-classification":
                return [self._image(path) for path in inputs]
            if self.task == "token-classification":
                return [self._tokens(text) for text in inputs]
            if self.task == "question-answering":
                return [self._answer(text) for text in inputs]
            if self.task == "masked-lm":
                return [self._fill(text) for text in inputs]
            if self.task in ("causal-lm", "seq2seq"):
                return [self._generate(text) for text in inputs]
            if self.task == "feature-extraction":
                return self._embed(inputs)
            return self._classify(inputs)

    def _embed(self, texts: list[str]) -> list[Prediction]:
        enc = self.tokenizer(cut_texts(texts, 512), truncation=True, max_length=512,
                             padding=True, return_tensors="pt")
        enc = self.on_device(enc)
        vectors = self.model.pool(enc["input_ids"], enc["attention_mask"],
                                  enc.get("token_type_ids")).float().cpu()
        return [Prediction(text, None, float(v.norm()),
                           {f"dim{i}": float(x) for i, x in enumerate(v.tolist())})
                for text, v in zip(texts, vectors, strict=True)]

    def _classify(self, texts: list[str]) -> list[Prediction]:
        torch = self.torch
        enc = self.tokenizer(cut_texts(texts, 512), truncation=True, max_length=512,
                             padding=True, return_tensors="pt")
        enc = self.on_device(enc)
        _, logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                               token_type_ids=enc.get("token_type_ids"))
        logits = logits.float().cpu()
        out = []
        for text, row in zip(texts, logits, strict=True):
            if self.task == "regression":
                out.append(Prediction(text, None, float(row[0]), {}))
                continue
            multi = self.task == "multi-label-classification"
            probs = (torch.sigmoid(row) if multi else torch.softmax(row, -1)).tolist()
            scores = dict(zip(self.labels, probs, strict=True))
            if multi:
                chosen = [n for n, p in scores.items() if p >= 0.5]
                label = ", ".join(chosen) if chosen else "(none)"
                score = min((scores[n] for n in chosen), default=1 - max(probs))
                out.append(Prediction(text, label, score, scores))
                continue
            best = max(scores, key=scores.get)
            out.append(Prediction(text, best, scores[best], scores))
        return out

    def score_batches(self, texts: list[str], pairs: list[str] | None = None, *,
                      batch_size: int = 32, max_length: int = 512, progress=None):
        """Probabilities (N x labels; the value for regression) of a sequence head for
        many texts: batches of similar length, in input order on return."""
        torch = self.torch
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = None
        with torch.inference_mode(), self.autocast():
            for start in range(0, len(order), batch_size):
                chunk = order[start:start + batch_size]
                enc = self.tokenizer(cut_texts([texts[i] for i in chunk], max_length),
                                     cut_texts([pairs[i] for i in chunk], max_length)
                                     if pairs else None,
                                     truncation=True, max_length=max_length, padding=True,
                                     return_tensors="pt")
                enc = self.on_device(enc)
                _, logits = self.model(input_ids=enc["input_ids"],
                                       attention_mask=enc["attention_mask"],
                                       token_type_ids=enc.get("token_type_ids") if pairs
                                       else None)
                logits = logits.float().cpu()
                probs = (logits if self.task == "regression" else torch.sigmoid(logits)
                         if self.task == "multi-label-classification" else
                         torch.softmax(logits, -1))
                if out is None:
                    out = torch.empty(len(texts), probs.shape[-1])
                out[torch.tensor(chunk)] = probs
                if progress is not None:
                    progress(len(chunk), len(texts))
        return out if out is not None else torch.empty(0, max(1, len(self.labels)))

    def readable(self, outputs) -> tuple[list[str], list[float]]:
        """(predicted label, its score) per row of `score_batches`' output."""
        if self.task == "regression":
            values = outputs[:, 0].tolist()
            return [f"{v:.6g}" for v in values], values
        if self.task == "multi-label-classification":
            on = (outputs >= 0.5).tolist()
            names = [", ".join(n for n, o in zip(self.labels, row, strict=True) if o)
                     for row in on]
            # The least sure of the per-label decisions, as in the playground.
            sure = self.torch.maximum(outputs, 1 - outputs).min(-1).values.tolist()
            return names, sure
        score, best = outputs.max(-1)
        return [self.labels[i] for i in best.tolist()], score.tolist()

    def _tokens(self, text: str) -> Prediction:
        words = text.split()
        enc = self.tokenizer(words, is_split_into_words=True, truncation=True,
                             return_tensors="pt")
        logits = self.model(**self.on_device(enc)).logits[0].float().cpu()
        probs = self.torch.softmax(logits, -1)
        tags, seen = [], set()
        for position, word in enumerate(enc.word_ids(0)):
            if word is None or word in seen:
                continue
            seen.add(word)
            best = int(probs[position].argmax())
            tags.append((words[word], self.model.config.id2label[best],
                         float(probs[position, best])))
        label = " ".join(f"{w}/{t}" for w, t, _ in tags)
        return Prediction(text, label, min((p for *_, p in tags), default=0.0),
                          {f"{i}:{w}": p for i, (w, _, p) in enumerate(tags)})

    def _answer(self, text: str) -> Prediction:
        from engine.tasks.qa import best_span

        question, sep, context = text.partition(QA_SEPARATOR)
        if not sep:
            raise DataError(f"A question-answering input is 'QUESTION {QA_SEPARATOR} CONTEXT'; "
                            f"{text[:40]!r} has no {QA_SEPARATOR}.")
        question, context = question.strip(), context.strip()
        if not question or not context:
            missing = "question" if not question else "context"
            raise DataError(f"The {missing} of {text[:40]!r} is empty; a question-answering "
                            f"input is 'QUESTION {QA_SEPARATOR} CONTEXT'.")
        enc = self.tokenizer(question, context, truncation="only_second", max_length=384,
                             stride=64, return_overflowing_tokens=True,
                             return_offsets_mapping=True, padding=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping").tolist()
        enc.pop("overflow_to_sample_mapping", None)
        out = self.model(**self.on_device(enc))
        starts, ends = out.start_logits.float().cpu(), out.end_logits.float().cpu()
        best = (float("-inf"), 0, 0)
        for w in range(len(offsets)):
            seq = enc.sequence_ids(w)
            window = [tuple(o) if s == 1 else None for o, s in zip(offsets[w], seq, strict=True)]
            span = best_span(starts[w], ends[w], window)
            best = max(best, span)
        return Prediction(text, context[best[1]:best[2]], best[0])

    def _fill(self, text: str) -> Prediction:
        mask = self.tokenizer.mask_token
        if mask not in text:
            raise DataError(f"A masked-LM input needs the mask token {mask} where a word "
                            f"should be filled in, e.g. 'the movie was {mask} .'")
        enc = self.tokenizer(text, return_tensors="pt")
        where = (enc["input_ids"][0] == self.tokenizer.mask_token_id).nonzero()[0, 0]
        logits = self.model(**self.on_device(enc)).logits[0, where].float().cpu()
        probs = self.torch.softmax(logits, -1)
        top = self.torch.topk(probs, 5)
        fills = {self.tokenizer.decode([int(i)]).strip(): float(p)
                 for p, i in zip(top.values, top.indices, strict=True)}
        best = next(iter(fills))
        return Prediction(text, best, fills[best], fills)

    def _generate(self, text: str) -> Prediction:
        enc = self.tokenizer(text, return_tensors="pt")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        generated = self.model.generate(**self.on_device(enc), max_new_tokens=40,
                                        do_sample=False, num_beams=1,
                                        pad_token_id=self.tokenizer.pad_token_id)
        if self.task == "causal-lm":
            generated = generated[:, enc["input_ids"].shape[1]:]
        generated = generated.cpu()
        return Prediction(text, self.tokenizer.decode(generated[0], skip_special_tokens=True)
                          .strip(), 1.0)

    def _image(self, path: str) -> Prediction:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:
                pixels = self.transform(img.convert("RGB")).unsqueeze(0)
        except FileNotFoundError:
            raise DataError(f"Image {path} does not exist.") from None
        except (UnidentifiedImageError, OSError):
            raise DataError(f"{path} is not an image hubtune can read.") from None
        out = self.model(pixel_values=pixels.to(self.device))
        logits = out[1] if isinstance(out, tuple) else out.logits
        probs = self.torch.softmax(logits[0].float(), -1).tolist()
        scores = dict(zip(self.labels, probs, strict=True))
        best = max(scores, key=scores.get)
        return Prediction(path, best, scores[best], scores)


def place_for_run(store, config, device: str | None = None):
    """Where a run's model runs in this process (`engine.training.inference`): in the
    precision and TF32 choice of `config` (a RunConfig or a run's stored config dict),
    on the `device` asked for, else on a GPU the queue's slots in `store` show free
    (store None: no queue known, the first visible GPU)."""
    from engine.core.config import RunConfig, TrainSpec
    from engine.training.inference import place_inference

    try:
        train = config.train if isinstance(config, RunConfig) else \
            RunConfig.from_dict(config or {}).train
    except HubtuneError:  # a stored config this version no longer reads: the defaults
        train = TrainSpec()
    slots = None
    if store is not None and (device or "cuda").strip().lower() == "cuda":
        from engine.runs.queue import read_slots

        try:
            slots = read_slots(store)
        except HubtuneError:  # a bad HUBTUNE_* knob: `queue slots` says so; pick unaided
            slots = None
    return place_inference(train.precision, device=device, slots=slots, tf32=train.tf32)


# -- a whole file -------------------------------------------------------------

SEQUENCE_FILE_TASKS = ("text-classification", "text-pair-classification",
                       "multi-label-classification", "regression")
FILE_TASKS = (*SEQUENCE_FILE_TASKS, "image-classification", "token-classification",
              "question-answering", "seq2seq")
"""Tasks `predict_file` covers (engine.trained.batch_predict reads the files of the last four)."""


def predict_file(model_dir: Path, cfg, path: Path, *, column: str | None = None,
                 batch_size: int = 32, progress=None, placement=None,
                 encoding: str | None = None) -> FilePredictions:
    """Predict every row of a CSV/TSV/JSONL/Parquet file with a run's model, reading it
    as training read its data (`read_table`, the run's encoding and max_length);
    `progress(rows, total)` is called after each batch of `rows`. `placement`: where
    (`place_for_run`); default the first visible GPU (else the CPU) in the run's
    precision.

    The file is a new one, read in its own encoding, never silently in the training
    file's: `encoding` when given, else what `new_file_encoding` finds (a byte-order
    mark, UTF-8, or the run's own with a note in `FilePredictions.notes`)."""
    import dataclasses

    from engine.data.loading import _text, read_table
    from engine.data.reader import new_file_encoding

    encoding, note = new_file_encoding(Path(path), given=encoding, usual=cfg.data.encoding)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, encoding=encoding))
    notes = (note,) if note else ()
    if placement is None:
        from engine.training.inference import place_inference

        placement = place_inference(cfg.train.precision, tf32=cfg.train.tf32)
    predictor = Predictor(model_dir, placement)
    if predictor.task not in FILE_TASKS:
        raise DataError(f"Batch prediction over a file is not available for head.task "
                        f"{predictor.task}; `hubtune predict ID INPUT...` predicts single "
                        "inputs.")
    path = Path(path)
    if predictor.task not in SEQUENCE_FILE_TASKS:
        from engine.trained.batch_predict import predict_other_file

        done = predict_other_file(predictor, cfg, path, column, batch_size, progress)
        return dataclasses.replace(done, notes=notes)
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a CSV, TSV, JSONL or Parquet file.")
    table = read_table(path, encoding=cfg.data.encoding, role="data")
    columns = [str(c) for c in table.columns]
    text_col = column or cfg.data.text_column
    pair_col = cfg.data.text_pair_column
    for wanted, what in ((text_col, "--column"), (pair_col, "data.text_pair_column")):
        if wanted is not None and wanted not in columns:
            raise DataError(f"{path} has no column {wanted!r} ({what}); its columns are "
                            f"{', '.join(columns)}.")
    texts = [_text(v) for v in table[text_col]]
    pairs = [_text(v) for v in table[pair_col]] if pair_col else None
    outputs = predictor.score_batches(texts, pairs, batch_size=batch_size,
                                      max_length=cfg.data.max_length, progress=progress)
    out = table.copy()
    predicted, score = predictor.readable(outputs)
    out["predicted"], out["score"] = predicted, score
    if predictor.task != "regression" and len(predictor.labels) <= PROBABILITY_COLUMNS_UP_TO:
        for i, name in enumerate(predictor.labels):
            out[f"p_{name}"] = outputs[:, i].tolist()
    metric = None
    label_col = cfg.data.label_column
    if label_col in columns and label_col not in (text_col, pair_col):
        metric = file_metric(predictor.task, list(table[label_col]), predicted, outputs)
    return FilePredictions(out, metric, notes)
