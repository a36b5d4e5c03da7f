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


FULL_MATRIX_CLASSES = 12
"""Up to this many classes the report keeps the whole confusion matrix; above it, the most
confused pairs (a 1,000-class grid is unreadable and a megabyte of summary)."""
TOP_PAIRS = 20
ALL_CLASSES_UP_TO = 50
"""Per-class scores for every class up to this many; above it, the `TOP_PAIRS` worst by F1."""


def class_report(cm: torch.Tensor) -> dict:
    """Per-class precision, recall, F1 and support, and the confusion that explains them.

    `per_class` rows are [class index, precision, recall, F1, support]; with many classes
    only the worst by F1 (among classes that occur) are kept. `confusion` is the full
    matrix (rows true, columns predicted) for a few classes, else None, and
    `confused_pairs` is [true, predicted, count] for the most frequent mistakes.
    """
    cm = cm.long().cpu()
    n = cm.shape[0]
    tp = cm.diag().double()
    support, predicted = cm.sum(1).double(), cm.sum(0).double()
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    f1 = 2 * tp / (support + predicted).clamp(min=1)
    rows = [[i, float(precision[i]), float(recall[i]), float(f1[i]), int(support[i])]
            for i in range(n) if support[i] + predicted[i] > 0]
    if n > ALL_CLASSES_UP_TO:
        rows = sorted(rows, key=lambda r: (r[3], -r[4]))[:TOP_PAIRS]
    off = cm.clone()
    off.fill_diagonal_(0)
    where = off.nonzero()
    counts = off[where[:, 0], where[:, 1]]
    pairs = sorted(([t, p, c] for (t, p), c in zip(where.tolist(), counts.tolist(), strict=True)),
                   key=lambda r: (-r[2], r[0], r[1]))[:TOP_PAIRS]
    return {"classes": n, "per_class": rows, "worst_only": n > ALL_CLASSES_UP_TO,
            "confused_pairs": pairs,
            "confusion": cm.tolist() if n <= FULL_MATRIX_CLASSES else None}
