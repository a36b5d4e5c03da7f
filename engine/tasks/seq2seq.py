"""Sequence to sequence (translation, summarisation) on source / target columns.

The encoder-decoder learns with teacher forcing; evaluation also generates
(greedy) for the validation sources and scores the text against the
targets with sacrebleu's corpus BLEU and chrF, and ROUGE-1/2/L (engine.tasks.rouge).
"""

from __future__ import annotations

from pathlib import Path

import torch

from engine.core.config import RunConfig
from engine.tasks.base import (
    FieldCollator,
    FieldExamples,
    Task,
    TaskData,
    evaluate_batches,
    load_auto_model,
    refuse_folder,
)
from engine.tasks.columns import SOURCE_NAMES, TARGET_NAMES  # noqa: F401  TARGET_NAMES: re-exported

GENERATE_LIMIT = 500
"""Validation examples generated for BLEU/chrF/ROUGE at each evaluation (the loss uses
all); review's per-example rows cover these."""


class Seq2SeqTask(Task):
    metrics = ("loss", "bleu", "chrf", "rouge1", "rouge2", "rougeL")
    auto_class = "AutoModelForSeq2SeqLM"
    pipeline_tag = "text2text-generation"
    length_keys = ("data.max_length", "data.max_target_length")
    """The decoder's positions bound the targets too."""

    # -- using a trained run ------------------------------------------------------

    def predict(self, predictor, inputs):
        from engine.tasks.generation_use import generate

        return [generate(predictor, text, continues=False) for text in inputs]

    def predict_file(self, predictor, cfg: RunConfig, path: Path, column, batch_size: int,
                     progress):
        from engine.tasks.generation_use import predict_texts

        refuse_folder(path)
        return predict_texts(predictor, path, cfg, column, batch_size, progress)

    def file_review_inputs(self, cfg: RunConfig):
        """Each validation source with its target, as `load_data` reads them."""
        from engine.tasks.predictions import ExampleInput

        _, val, path = seq2seq_frames(cfg, [])
        source, target = seq2seq_columns(val, path, cfg)
        return [ExampleInput(str(s), int(i) + 1, str(t)) for i, s, t in
                zip(val.index, val[source], val[target], strict=True)]

    # -- training -----------------------------------------------------------------

    def load_data(self, cfg: RunConfig, tokenizer) -> TaskData:
        from engine.core.config import is_hub_data
        from engine.data.loading import check_text_column, tokenise

        if is_hub_data(cfg.data.train):
            from engine.tasks.hub_readers import load_hub_seq2seq

            return load_hub_seq2seq(cfg, tokenizer, GENERATE_LIMIT)
        spec = cfg.data
        warnings: list[str] = []
        train, val, path = seq2seq_frames(cfg, warnings)

        def encode(frame) -> tuple[FieldExamples, list[str]]:
            src_col, tgt_col = seq2seq_columns(frame, path, cfg)
            check_text_column(frame, path, src_col, "text_column")
            sources = [spec.source_prefix + str(s) for s in frame[src_col]]
            targets = [str(t) for t in frame[tgt_col]]
            enc = tokenise(tokenizer, sources, text_target=targets, truncation=True,
                           max_length=spec.max_length, return_attention_mask=False)
            labels = tokenise(tokenizer, None, text_target=targets, truncation=True,
                              max_length=spec.max_target_length)["input_ids"]
            fields = {"input_ids": enc["input_ids"], "labels": labels}
            return FieldExamples(fields, [len(x) for x in enc["input_ids"]]), targets

        train_ex, _ = encode(train)
        val_ex, references = encode(val)
        return TaskData(train_ex, val_ex, extra={"references": references},
                        warnings=tuple(warnings))

    def build(self, cfg: RunConfig, path: Path, data: TaskData):
        return load_auto_model("AutoModelForSeq2SeqLM", self, cfg, path,
                               "it needs an encoder-decoder such as T5, BART or Marian.")

    def collator(self, examples, tokenizer, cfg: RunConfig, *, train: bool):
        return FieldCollator(examples, {"input_ids": self.pad_id(tokenizer), "labels": -100})

    def evaluate(self, model, data: TaskData, tokenizer, cfg: RunConfig, device) -> dict:
        import sacrebleu

        val = data.validation
        collate = self.collator(val, tokenizer, cfg, train=False)
        from engine.tasks.eval_shards import gather, my_share

        loss, _ = evaluate_batches(model, val, collate, cfg.train.batch_size * 2, device)
        n = min(len(val), GENERATE_LIMIT)
        outputs: dict[int, str] = {}
        was_training = model.training
        model.eval()
        order = sorted(range(n), key=lambda i: -val.lengths[i])
        step = cfg.train.batch_size * 2
        generated_texts = {}
        with torch.no_grad():  # each rank of a data-parallel run generates its share
            for position, indices in my_share([order[s:s + step] for s in range(0, n, step)]):
                batch = {k: v.to(device) for k, v in collate(indices).items() if k != "labels"}
                generated = model.generate(**batch, max_new_tokens=cfg.data.max_target_length,
                                           num_beams=1, do_sample=False)
                texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
                generated_texts[position] = list(zip(indices, texts, strict=True))
        for pairs in gather(generated_texts):
            outputs.update(pairs)
        model.train(was_training)
        hypotheses = [outputs[i].strip() for i in range(n)]
        references = data.extra["references"][:n]
        refs = [references]
        from engine.tasks.review_rows import TextResults
        from engine.tasks.rouge import corpus_rouge

        # Each example's own chrF: what `hubtune runs errors` ranks the worst by.
        items = [(i, h, r, None, 100.0 - sacrebleu.sentence_chrf(h, [r]).score)
                 for i, (h, r) in enumerate(zip(hypotheses, references, strict=True))]
        return {
            "loss": loss,
            "bleu": sacrebleu.corpus_bleu(hypotheses, refs).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, refs).score,
            **corpus_rouge(hypotheses, references),
            "examples": TextResults(items, "chrf_gap"),
        }


def seq2seq_frames(cfg: RunConfig, warnings: list[str]):
    """(training table, validation table, training file), read and split as training
    reads them: rows without a target left out (reported in `warnings`)."""
    from engine.data.file_rows import read_rows
    from engine.data.loading import drop_missing_labels, load_frames, pick_column

    spec = cfg.data

    def read(file, role):
        # A row without a target would train towards the text 'nan': left out, reported.
        frame = read_rows(file, encoding=spec.encoding, role=role)
        target = pick_column(frame, file, spec.label_column, "label_column", TARGET_NAMES)
        return drop_missing_labels(frame, file, target, warnings, classes=False)

    return load_frames(cfg, read)


def seq2seq_columns(frame, path: Path, cfg: RunConfig) -> tuple[str, str]:
    """(source column, target column) of a table, configured or conventional."""
    from engine.data.loading import pick_column

    spec = cfg.data
    return (pick_column(frame, path, spec.text_column, "text_column", SOURCE_NAMES),
            pick_column(frame, path, spec.label_column, "label_column", TARGET_NAMES))
