"""Per-example validation results: what review (`hubtune runs errors`, `runs compare
--examples`) reads about the model a run keeps.

An evaluation gathers, per example, its index in the validation split, the prediction,
the label, a confidence and a loss, on the device; `ExampleResults.rows` turns them
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
"""What a row's `loss` is, per label kind (seq2seq records `100 - sentence chrF`)."""


@dataclass
class ExampleResults:
    """One evaluation's per-example results, still tensors (on any device)."""

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


class ExampleCollector:
    """Gathers `ExampleResults` batch by batch, in whatever order the batches come."""

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

    def results(self) -> ExampleResults | None:
        if not self.parts["index"]:
            return None
        cat = {k: torch.cat(v) if v else None for k, v in self.parts.items()}
        return ExampleResults(cat["index"], cat["pred"], cat["gold"], cat["conf"], cat["loss"],
                              self.kind)


@dataclass
class TextExampleResults:
    """Per-example results already in plain Python (generated text, spans)."""

    items: list[tuple[int, str, str, float | None, float]]
    """(index, predicted, label, confidence, loss) per example."""
    loss_kind: str
    """What `loss` is, e.g. chrf_gap (100 - sentence chrF)."""

    def rows(self, labels: tuple[str, ...], limit: int = MAX_STORED) -> list[tuple]:
        return sorted(self.items, key=lambda r: -r[4])[:limit]
