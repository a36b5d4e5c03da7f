"""Review rows: per-example validation results, what review (`hubtune runs errors`,
`runs compare --examples`) reads about the model a run keeps. (Not the training
examples a task feeds the loop: those are `engine.tasks.base.Examples`.)

An evaluation gathers, per example, its index in the validation split, the prediction,
the label, a confidence and a loss, on the device; `LabelResults.rows` turns them
into plain rows only for an evaluation whose model is kept (the loop decides), and
keeps at most `MAX_STORED` of them, the highest loss first. Imports torch; never the
store or textual.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MAX_STORED = 20_000
"""Rows kept per run: the highest-loss ones, so a huge validation set stays small in the
store while its worst examples are all there."""

LOSS_KINDS = {"single_label": "cross_entropy", "multi_label": "binary_cross_entropy",
              "regression": "squared_error"}
"""What a row's `loss` is, per label kind; the text tasks name theirs in
`TextResults.loss_kind`."""


@dataclass
class LabelResults:
    """One evaluation's per-example results for a label head (classes, multi-label,
    regression, images), still tensors (on any device)."""

    index: torch.Tensor
    """Each example's position in the validation split."""
    predicted: torch.Tensor
    label: torch.Tensor
    confidence: torch.Tensor | None
    loss: torch.Tensor
    kind: str
    """single_label, multi_label or regression."""

    @property
    def loss_kind(self) -> str:
        return LOSS_KINDS[self.kind]

    def rows(self, labels: tuple[str, ...], limit: int = MAX_STORED) -> list[tuple]:
        """(index, predicted, label, confidence, loss) with names for classes, the
        highest loss first, at most `limit` of them."""
        loss = self.loss.float()
        keep = torch.argsort(loss, descending=True, stable=True)[:limit]
        index = self.index[keep].tolist()
        predicted = self.predicted[keep].tolist()
        label = self.label[keep].tolist()
        confidence = (self.confidence[keep].float().tolist() if self.confidence is not None
                      else [None] * len(index))
        losses = loss[keep].tolist()
        name = _namer(self.kind, labels)
        return [(i, name(p), name(g), c, lo) for i, p, g, c, lo in
                zip(index, predicted, label, confidence, losses, strict=True)]


def _namer(kind: str, labels: tuple[str, ...]):
    if kind == "regression":
        return lambda v: f"{float(v):.6g}"
    if kind == "multi_label":
        return lambda hot: ", ".join(n for n, on in zip(labels, hot, strict=False) if on) or "(none)"
    return lambda i: labels[int(i)] if 0 <= int(i) < len(labels) else str(int(i))


def per_example(kind: str, logits: torch.Tensor, gold: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(loss, confidence) of each example of a batch; both stay on the device."""
    logits = logits.float()
    if kind == "regression":
        return (logits.squeeze(-1) - gold.float()) ** 2, None
    if kind == "multi_label":
        loss = F.binary_cross_entropy_with_logits(logits, gold.float(), reduction="none")
        probs = torch.sigmoid(logits)
        # The least sure of the per-label decisions.
        return loss.mean(-1), torch.maximum(probs, 1 - probs).min(-1).values
    logp = torch.log_softmax(logits, -1)
    loss = -logp.gather(-1, gold.long().unsqueeze(-1)).squeeze(-1)
    return loss, logp.max(-1).values.exp()


class LabelResultCollector:
    """Gathers `LabelResults` batch by batch, in whatever order the batches come."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.parts: dict[str, list[torch.Tensor]] = {k: [] for k in
                                                     ("index", "pred", "gold", "conf", "loss")}

    def add(self, indices, logits: torch.Tensor, pred: torch.Tensor, gold: torch.Tensor) -> None:
        loss, conf = per_example(self.kind, logits, gold)
        self.parts["index"].append(torch.as_tensor(indices, device=logits.device))
        self.parts["pred"].append(pred)
        self.parts["gold"].append(gold.long() if self.kind != "regression" else gold)
        self.parts["loss"].append(loss)
        if conf is not None:
            self.parts["conf"].append(conf)

    def results(self) -> LabelResults | None:
        if not self.parts["index"]:
            return None
        cat = {k: torch.cat(v) if v else None for k, v in self.parts.items()}
        return LabelResults(cat["index"], cat["pred"], cat["gold"], cat["conf"], cat["loss"],
                            self.kind)


@dataclass
class TextResults:
    """Per-example results of a text-producing head, already in plain Python (generated text, spans, tag sequences).

    `predicted` and `label` may be zero-argument callables (decoding token ids is the
    costly part for language models): only the rows kept are turned into text.
    """

    items: list[tuple]
    """(index, predicted, label, confidence, loss) per example."""
    loss_kind: str
    """What `loss` is: chrf_gap (100 - sentence chrF), f1_gap (100 - SQuAD F1), tag_errors
    (words tagged wrong), token_loss (mean cross-entropy of the scored tokens)."""
    total: int | None = None
    """Validation examples evaluated, where the split's length counts something else
    (QA's windows); None: the split's length."""

    def rows(self, labels: tuple[str, ...], limit: int = MAX_STORED) -> list[tuple]:
        kept = sorted(self.items, key=lambda r: (-r[4], r[0]))[:limit]
        return [(i, _text(p), _text(g), c, float(lo)) for i, p, g, c, lo in kept]


TEXT_LIMIT = 400
"""Characters kept of a language model's predicted and true text per row."""


def _text(value) -> str:
    """A row's text; a language model's (decoded on demand) cut to TEXT_LIMIT."""
    if not callable(value):
        return value
    value = value()
    return value if len(value) <= TEXT_LIMIT else value[:TEXT_LIMIT - 1] + "…"


def tag_results(gold: list[list[str]], pred: list[list[str]],
                confidence: list[float | None]) -> TextResults:
    """Token classification: each sentence's tags, the worst with the most words tagged
    wrong; confidence is the least sure word's probability."""
    items = [(i, " ".join(p), " ".join(g), c, float(sum(a != b for a, b in zip(g, p,
                                                                                strict=True))))
             for i, (g, p, c) in enumerate(zip(gold, pred, confidence, strict=True))]
    return TextResults(items, "tag_errors")


def answer_results(predictions: list[str], answers: list[list[str]],
                   scores: list[float | None], answer_f1, normalize_answer
                   ) -> TextResults:
    """Question answering: each question's answer against the gold answer it comes closest
    to (so `predicted == label` is an exact match), ranked by 100 - its F1. The task
    passes its own SQuAD `answer_f1` and `normalize_answer` (engine.tasks.qa)."""
    items = []
    for i, (pred, golds, score) in enumerate(zip(predictions, answers, scores, strict=True)):
        golds = golds or [""]
        f1s = [answer_f1(pred, g) for g in golds]
        best = max(range(len(golds)), key=lambda k: (f1s[k], normalize_answer(pred)
                                                      == normalize_answer(golds[k])))
        items.append((i, pred, golds[best], score, 100.0 * (1.0 - f1s[best])))
    return TextResults(items, "f1_gap", total=len(predictions))


class TokenLossCollector:
    """Language models: each example's mean cross-entropy over its scored tokens, with
    the model's guesses and the true tokens, decoded only for the rows kept."""

    def __init__(self, tokenizer, causal: bool) -> None:
        self.tokenizer, self.causal = tokenizer, causal
        self.losses: list[torch.Tensor] = []
        self.items: list[tuple[int, list[int], list[int]]] = []

    def add(self, indices, logits: torch.Tensor, labels: torch.Tensor) -> None:
        if self.causal:  # the model predicts token t+1 at position t
            logits, labels = logits[:, :-1], labels[:, 1:]
        token_loss = F.cross_entropy(logits.float().transpose(1, 2), labels,
                                     ignore_index=-100, reduction="none")
        scored = labels != -100
        self.losses.append(token_loss.sum(1) / scored.sum(1).clamp(min=1))
        guesses = torch.where(scored, logits.argmax(-1), -100).cpu().tolist()
        for i, guess, truth in zip(indices, guesses, labels.cpu().tolist(), strict=True):
            self.items.append((int(i), [t for t in guess if t != -100],
                               [t for t in truth if t != -100]))

    def results(self) -> TextResults | None:
        if not self.items:
            return None
        losses = torch.cat(self.losses).tolist()
        decode = self.tokenizer.decode

        def text(ids: list[int]):
            if self.causal:  # the continuation as text
                return lambda: decode(ids).strip()
            return lambda: " ".join(decode([t]).strip() for t in ids)  # one per mask

        items = [(i, text(guess), text(truth), None, loss)
                 for (i, guess, truth), loss in zip(self.items, losses, strict=True)]
        return TextResults(items, "token_loss")
