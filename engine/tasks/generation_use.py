"""Using a trained language model or seq2seq run (engine.tasks.lm, engine.tasks.seq2seq):
a masked word filled, a text continued or transformed, a whole file of sources generated
and scored (seq2seq), and a language model's validation texts re-read for review."""

from __future__ import annotations

from pathlib import Path

from engine.core.errors import DataError
from engine.data.text_cells import cut_texts
from engine.tasks.predictions import ExampleInput, FilePredictions, Prediction, batches


def fill(predictor, text: str) -> Prediction:
    import torch

    tokenizer = predictor.tokenizer
    mask = tokenizer.mask_token
    if mask not in text:
        raise DataError(f"A masked-LM input needs the mask token {mask} where a word "
                        f"should be filled in, e.g. 'the movie was {mask} .'")
    enc = tokenizer(text, return_tensors="pt")
    where = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0, 0]
    logits = predictor.model(**predictor.on_device(enc)).logits[0, where].float().cpu()
    probs = torch.softmax(logits, -1)
    top = torch.topk(probs, 5)
    fills = {tokenizer.decode([int(i)]).strip(): float(p)
             for p, i in zip(top.values, top.indices, strict=True)}
    best = next(iter(fills))
    return Prediction(text, best, fills[best], fills)


def generate(predictor, text: str, *, continues: bool) -> Prediction:
    """Greedy generation from `text`; `continues`: the model repeats its prompt (a causal
    LM), which is cut off."""
    tokenizer = predictor.tokenizer
    enc = tokenizer(text, return_tensors="pt")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    generated = predictor.model.generate(**predictor.on_device(enc), max_new_tokens=40,
                                         do_sample=False, num_beams=1,
                                         pad_token_id=tokenizer.pad_token_id)
    if continues:
        generated = generated[:, enc["input_ids"].shape[1]:]
    generated = generated.cpu()
    return Prediction(text, tokenizer.decode(generated[0], skip_special_tokens=True).strip(),
                      1.0, shown_as="text")


def predict_texts(predictor, path: Path, cfg, column, batch_size: int, progress
                  ) -> FilePredictions:
    """Greedy generation for each source (data.source_prefix, data.max_length,
    data.max_target_length as in evaluation); chrF against a target column if any."""
    import torch

    from engine.data.file_rows import read_rows
    from engine.data.loading import pick_column
    from engine.tasks.columns import TARGET_NAMES

    spec = cfg.data
    table = read_rows(path, encoding=spec.encoding, role="data")
    source_col = pick_column(table, path, column or spec.text_column, "--column",
                             ("source", "src", "document", "input"))
    sources = [spec.source_prefix + ("" if v is None or v != v else str(v))
               for v in table[source_col]]
    texts = [""] * len(sources)
    order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))
    with torch.inference_mode(), predictor.autocast():
        for chunk in batches(order, batch_size):
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
    out = table.frame()  # the rows as read, written out with the predictions added
    out["predicted"] = texts
    target_col = next((c for c in (spec.label_column, *TARGET_NAMES)
                       if c in table.columns and c != source_col), None)
    metric = None
    if target_col is not None:
        import sacrebleu

        targets = table[target_col]
        have = [i for i, v in enumerate(targets) if isinstance(v, str)]
        if have:
            score = sacrebleu.corpus_chrf([texts[i] for i in have],
                                          [[targets[i] for i in have]]).score
            metric = ("chrf", score, len(have))
    return FilePredictions(out, metric)


def lm_inputs(cfg) -> list[ExampleInput]:
    """The texts a language model was validated on: non-empty, and more than one token
    long with the run's tokenizer (as LanguageModelTask.load_data keeps them)."""
    from engine.data.loading import load_frames, pick_column
    from engine.modeling.loading import load_tokenizer

    spec = cfg.data
    _, val, path = load_frames(cfg)
    column = pick_column(val, path, spec.text_column, "text_column", ("content", "sentence"))
    kept = [(i, t) for i, t in zip(val.index, val[column], strict=True)
            if isinstance(t, str) and t.strip()]
    tokenizer, _ = load_tokenizer(cfg.model)
    ids = tokenizer(cut_texts([t for _, t in kept], spec.max_length), truncation=True,
                    max_length=spec.max_length, return_attention_mask=False
                    )["input_ids"] if kept else []
    return [ExampleInput(t, int(i) + 1, "") for (i, t), x in zip(kept, ids, strict=True)
            if len(x) > 1]
