"""Masked and causal language modelling on a text column (domain adaptation).

Masked LM hides 15% of the non-special tokens (80% become the mask token,
10% a random token, 10% stay) and learns to restore them; the masks are
drawn from a generator seeded by the run seed and the batch's examples, so
a resumed run masks exactly as an unbroken one. Causal LM predicts each
next token. The metric is perplexity, exp(mean loss).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from engine.core.config import RunConfig
from engine.core.errors import ModelError
from engine.tasks.base import (
    FieldCollator,
    FieldExamples,
    Task,
    TaskData,
    evaluate_batches,
    load_auto_model,
)
from engine.tasks.columns import LM_TEXT_NAMES

MASK_FRACTION = 0.15


class MaskingCollator:
    """Masked LM batches: `FieldCollator`'s padding, then seeded masks and their labels."""

    def __init__(self, examples: FieldExamples, tokenizer, seed: int) -> None:
        self.pad = FieldCollator(examples, {"input_ids": tokenizer.pad_token_id or 0})
        self.mask_id = tokenizer.mask_token_id
        self.vocab = len(tokenizer)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
        self.seed = seed

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = self.pad(indices)
        ids = batch["input_ids"]
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + hash(tuple(indices))) % 2**63)
        eligible = (batch["attention_mask"] == 1) & ~torch.isin(ids, self.special)
        chosen = (torch.rand(ids.shape, generator=gen) < MASK_FRACTION) & eligible
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        roll = torch.rand(ids.shape, generator=gen)
        masked = ids.clone()
        masked[chosen & (roll < 0.8)] = self.mask_id
        swap = chosen & (roll >= 0.8) & (roll < 0.9)
        masked[swap] = torch.randint(self.vocab, ids.shape, generator=gen)[swap]
        batch["input_ids"], batch["labels"] = masked, labels
        return batch


class CausalCollator:
    """Causal LM batches: `FieldCollator`'s padding, the inputs as labels."""

    def __init__(self, examples: FieldExamples, pad_id: int) -> None:
        self.pad = FieldCollator(examples, {"input_ids": pad_id})

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        batch = self.pad(indices)
        # The model shifts labels itself; padding is left out of the loss.
        batch["labels"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        return batch


class LanguageModelTask(Task):
    metrics = ("loss", "perplexity")

    def __init__(self, name: str, watch: str = "accuracy") -> None:
        super().__init__(name, watch)
        self.causal = name == "causal-lm"
        self.auto_class = "AutoModelForCausalLM" if self.causal else "AutoModelForMaskedLM"
        self.pipeline_tag = "text-generation" if self.causal else "fill-mask"
        if not self.causal:
            self.input_kind = "text with the mask token in it"

    def load_processor(self, cfg: RunConfig):
        tokenizer, path = super().load_processor(cfg)
        if self.causal and tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token  # GPT-2 style models have no pad token
        if not self.causal and tokenizer.mask_token_id is None:
            raise ModelError(f"head.task masked-lm needs a tokenizer with a mask token; "
                             f"{cfg.model.id} has none (use causal-lm for decoder models).")
        return tokenizer, path

    def load_data(self, cfg: RunConfig, tokenizer) -> TaskData:
        from engine.core.config import is_hub_data
        from engine.data.loading import load_frames, pick_column, tokenise

        if is_hub_data(cfg.data.train):
            from engine.tasks.hub_readers import load_hub_lm

            return load_hub_lm(cfg, tokenizer)
        spec = cfg.data
        train, val, path = load_frames(cfg)

        def encode(frame) -> FieldExamples:
            column = pick_column(frame, path, spec.text_column, "text_column", LM_TEXT_NAMES)
            texts = [str(t) for t in frame[column] if isinstance(t, str) and t.strip()]
            if not texts:
                from engine.core.errors import DataError

                raise DataError(f"{path}: column {column!r} holds no text.")
            enc = tokenise(tokenizer, texts, truncation=True, max_length=spec.max_length,
                           return_attention_mask=False)
            ids = [x for x in enc["input_ids"] if len(x) > 1]
            return FieldExamples({"input_ids": ids}, [len(x) for x in ids])

        return TaskData(encode(train), encode(val))

    def build(self, cfg: RunConfig, path: Path, data: TaskData):
        if self.causal:
            return load_auto_model("AutoModelForCausalLM", self, cfg, path,
                                   "it needs a decoder such as GPT-2 or a Llama-style model.")
        return load_auto_model("AutoModelForMaskedLM", self, cfg, path,
                               "it needs an encoder with a masked-LM head, such as BERT.")

    def collator(self, examples, tokenizer, cfg: RunConfig, *, train: bool):
        if self.causal:
            return CausalCollator(examples, self.pad_id(tokenizer))
        return MaskingCollator(examples, tokenizer, cfg.train.seed)

    def evaluate(self, model, data: TaskData, tokenizer, cfg: RunConfig, device) -> dict:
        from engine.tasks.review_rows import TokenLossCollector

        def digest(indices, batch, out):  # the losses and guesses, not the vocabulary logits
            one = TokenLossCollector(tokenizer, self.causal)
            one.add(indices, out.logits, batch["labels"])
            return one.losses, one.items

        collate = self.collator(data.validation, tokenizer, cfg, train=False)
        loss, pieces = evaluate_batches(model, data.validation, collate,
                                        cfg.train.batch_size * 2, device, digest)
        collect = TokenLossCollector(tokenizer, self.causal)
        for losses, items in pieces:
            collect.losses.extend(losses)
            collect.items.extend(items)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)),
                "examples": collect.results()}

    # -- using a trained run ------------------------------------------------------

    def predict(self, predictor, inputs):
        from engine.tasks.generation_use import fill, generate

        if self.causal:
            return [generate(predictor, text, continues=True) for text in inputs]
        return [fill(predictor, text) for text in inputs]

    def file_review_inputs(self, cfg: RunConfig):
        from engine.tasks.generation_use import lm_inputs

        return lm_inputs(cfg)
