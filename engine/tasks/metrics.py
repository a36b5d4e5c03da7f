"""Classification metrics computed on tensors: no host sync until the end."""

from __future__ import annotations

import torch


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Rows are true classes, columns predicted ones."""
    flat = labels.long() * num_classes + preds.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def classification_scores(cm: torch.Tensor) -> dict[str, float]:
    """Accuracy and macro-F1 from a confusion matrix.

    Macro-F1 averages over the classes that occur in the labels or the
    predictions, as scikit-learn does.
    """
    cm = cm.double()
    tp = cm.diag()
    support = cm.sum(1)
    predicted = cm.sum(0)
    total = cm.sum()
    present = (support + predicted) > 0
    f1 = torch.where(present, 2 * tp / (support + predicted).clamp(min=1), torch.zeros_like(tp))
    return {
        "accuracy": float(tp.sum() / total) if total > 0 else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
    }
