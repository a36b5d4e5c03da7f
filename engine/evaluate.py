"""Evaluation over a split: loss and task metrics, predictions kept on the device."""

from __future__ import annotations

import torch

from engine.config import RunConfig
from engine.data import Collator, TextExamples, sorted_batches
from engine.metrics import classification_scores, confusion_matrix


@torch.no_grad()
def run_evaluation(model, examples: TextExamples, cfg: RunConfig, pad_id: int, num_labels: int,
                   device) -> dict:
    regression = cfg.head.task == "regression"
    was_training = model.training
    model.eval()
    collate = Collator(examples, pad_id, regression)
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    preds, golds = [], []
    for indices in sorted_batches(examples.lengths, cfg.train.batch_size * 2):
        batch = {k: v.to(device, non_blocking=True) for k, v in collate(indices).items()}
        loss, logits = model(**batch)
        total_loss += loss.double() * len(indices)
        golds.append(batch["labels"])
        preds.append(logits.squeeze(-1) if regression else logits.argmax(-1))
    model.train(was_training)
    return _metrics(torch.cat(golds), torch.cat(preds), float(total_loss) / len(examples),
                    regression, num_labels)


@torch.no_grad()
def evaluate_features(head, val, cfg: RunConfig, num_labels: int) -> dict:
    """The same metrics from cached validation features (see engine.features)."""
    regression = cfg.head.task == "regression"
    was_training = head.training
    head.eval()
    loss, logits = head(val.features, val.labels)
    head.train(was_training)
    pred = logits.squeeze(-1) if regression else logits.argmax(-1)
    return _metrics(val.labels, pred, float(loss), regression, num_labels)


def _metrics(gold, pred, loss: float, regression: bool, num_labels: int) -> dict:
    metrics: dict = {"loss": loss}
    if regression:
        metrics["mse"] = float(((pred.float() - gold.float()) ** 2).mean())
        metrics["mae"] = float((pred.float() - gold.float()).abs().mean())
    else:
        cm = confusion_matrix(gold, pred, num_labels)
        metrics.update(classification_scores(cm))
        metrics["confusion"] = cm.tolist()
    return metrics


def majority_baseline(val: TextExamples, majority: int | None, num_labels: int) -> dict:
    """What always answering the most frequent training label scores on `val`."""
    if majority is None or not len(val):
        return {}
    labels = torch.tensor(val.labels)
    preds = torch.full_like(labels, majority)
    scores = classification_scores(confusion_matrix(labels, preds, num_labels))
    return {f"baseline_majority_{k}": v for k, v in scores.items()}
