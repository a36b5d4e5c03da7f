"""Evaluation over a split: loss and task metrics, predictions kept on the device."""

from __future__ import annotations

import torch

from engine.core.config import RunConfig
from engine.data.loading import SequenceCollator, SequenceExamples
from engine.tasks.base import evaluate_batches
from engine.tasks.metrics import class_report, classification_scores, confusion_matrix
from engine.tasks.review_rows import LabelResultCollector


@torch.no_grad()
def run_evaluation(model, examples: SequenceExamples, cfg: RunConfig, pad_id: int,
                   num_labels: int, device, kind: str) -> dict:
    """A sequence head's validation metrics; `kind` is its label kind
    (engine.tasks.sequence.SequenceTask.label_kind)."""
    collate = SequenceCollator(examples, pad_id, kind != "single_label")
    loss, pieces = evaluate_batches(
        model, examples, collate, cfg.train.batch_size * 2, device,
        lambda indices, batch, out: label_piece(kind, indices, out[1], _predict(kind, out[1]),
                                                batch["labels"]))
    metrics, collector = fold_label_pieces(pieces, kind, loss, num_labels)
    metrics["examples"] = collector.results()
    return metrics


def label_piece(kind: str, indices, logits, pred, gold) -> dict:
    """What a label head keeps of one evaluation batch: each example's prediction, label,
    loss and confidence (computed where the logits are, so one rank or several agree)."""
    one = LabelResultCollector(kind)
    one.add(indices, logits, pred, gold)
    return {"pred": pred, "gold": gold, "parts": one.parts}


def fold_label_pieces(pieces: list[dict], kind: str, loss: float, num_labels: int):
    """(metrics without examples, the collector of per-example results) from the pieces of
    every batch, in order."""
    collector = LabelResultCollector(kind)
    for piece in pieces:
        for key, part in piece["parts"].items():
            collector.parts[key].extend(part)
    metrics = _metrics(torch.cat([p["gold"] for p in pieces]),
                       torch.cat([p["pred"] for p in pieces]), loss, kind, num_labels)
    return metrics, collector


@torch.no_grad()
def evaluate_features(head, val, cfg: RunConfig, num_labels: int) -> dict:
    """The same metrics from cached validation features (see engine.training.features);
    the label kind is the head's own (`problem_type`, the adapter's `label_kind`)."""
    kind = head.problem_type
    was_training = head.training
    head.eval()
    loss, logits = head(val.features, val.labels)
    head.train(was_training)
    pred = _predict(kind, logits)
    metrics = _metrics(val.labels, pred, float(loss), kind, num_labels)
    collector = LabelResultCollector(kind)  # the features are in example order
    collector.add(torch.arange(len(pred), device=pred.device), logits, pred, val.labels)
    metrics["examples"] = collector.results()
    return metrics



def _predict(kind: str, logits):
    if kind == "regression":
        return logits.squeeze(-1)
    if kind == "multi_label":
        return (logits > 0).long()
    return logits.argmax(-1)


def _metrics(gold, pred, loss: float, kind: str, num_labels: int) -> dict:
    metrics: dict = {"loss": loss}
    if kind == "multi_label":
        metrics.update(multi_label_scores(gold.long(), pred.long()))
    elif kind == "regression":
        metrics["mse"] = float(((pred.float() - gold.float()) ** 2).mean())
        metrics["mae"] = float((pred.float() - gold.float()).abs().mean())
    else:
        cm = confusion_matrix(gold, pred, num_labels)
        metrics.update(classification_scores(cm))
        metrics["class_report"] = class_report(cm)
    return metrics


def multi_label_scores(gold, pred) -> dict[str, float]:
    """Subset accuracy (every label right), micro-F1 and macro-F1 over labels."""
    tp = (gold & pred).sum(0).double()
    fp = ((1 - gold) & pred).sum(0).double()
    fn = (gold & (1 - pred)).sum(0).double()
    micro = float(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()).clamp(min=1))
    per_label = 2 * tp / (2 * tp + fp + fn).clamp(min=1)
    present = (tp + fp + fn) > 0
    return {
        "accuracy": float((gold == pred).all(1).double().mean()),
        "micro_f1": micro,
        "macro_f1": float(per_label[present].mean()) if present.any() else 0.0,
    }


def majority_baseline(val: SequenceExamples, majority: int | None, num_labels: int) -> dict:
    """What always answering the most frequent training label scores on `val`."""
    if majority is None or not len(val):
        return {}
    labels = torch.tensor(val.labels)
    preds = torch.full_like(labels, majority)
    scores = classification_scores(confusion_matrix(labels, preds, num_labels))
    return {f"baseline_majority_{k}": v for k, v in scores.items()}
