"""What an audit finds in labelled examples, from their features and their inputs.

Likely label errors come from confident learning (cleanlab) over out-of-sample class
probabilities: a logistic-regression head is trained on K-1 folds of the features and
predicts the K-th, so no example is judged by a model that saw its label. Confident
learning trusts those probabilities, so the head's strength of regularisation is chosen
inside each fold (`HEAD_CS`, by the log loss of an inner cross-validation on that fold's
own rows): a weakly regularised head (C=1) on a few thousand rows of 384-wide features
is overconfident, and flagged 2.5 times as many clean rows on real tweets
(bench/audit_bench.py). Duplicates are inputs equal after whitespace and case are
normalised (exact) or whose features' cosine similarity reaches a threshold (near);
leaks are validation rows that are, in either sense, also training rows. Degenerate
inputs and labels with few examples are counted from the inputs and labels alone.

Plain numpy, scikit-learn and cleanlab (the `audit` extra); the features come from the
config's model used as a frozen extractor, and rows are numbered as the data reader
numbers them (0-based data rows, header excluded).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.core.errors import DataError

NEAR_DUPLICATE_SIMILARITY = 0.98
"""Cosine similarity of two examples' features at or above which they count as near
duplicates (and a validation row as a near leak)."""
SIMILARITY_CELLS = 1 << 25
"""Cells of the similarity block computed at once (128 MB of float32), whatever N."""


def _chunk(n: int) -> int:
    """Rows compared at once against `n` others, keeping the block at SIMILARITY_CELLS."""
    return max(1, min(4096, SIMILARITY_CELLS // max(n, 1)))


@dataclass(frozen=True)
class LabelIssue:
    split: str
    row: int
    label: str
    suggested: str
    confidence: float
    """The out-of-sample probability of the suggested label."""


@dataclass(frozen=True)
class Duplicate:
    split: str
    rows: tuple[int, ...]
    kind: str
    """"exact" (equal after normalising whitespace and case) or "near" (features)."""


@dataclass(frozen=True)
class Leak:
    train_row: int
    validation_row: int
    similarity: float


def _libraries():
    """cleanlab's label-issue filter and the scikit-learn parts of the fold head, or one
    sentence saying how to install them."""
    try:
        from cleanlab.filter import find_label_issues as cleanlab_issues
        from sklearn.model_selection import StratifiedKFold
    except ImportError:
        raise _missing_extra() from None
    return cleanlab_issues, StratifiedKFold


def _missing_extra() -> DataError:
    return DataError("The label check needs the audit extra: pip install 'hubtune[audit]' "
                     "(cleanlab and scikit-learn).")


HEAD_CS = tuple(float(c) for c in np.logspace(-4, 0, 9))
"""Inverse regularisation strengths (scikit-learn's C) the fold head chooses from, half a
decade apart (a decade apart costs half the time but picked worse on wide, weakly
separated features: tests/engine/test_audit_findings.py)."""
INNER_FOLDS = 3
"""Folds of the inner cross-validation that picks C from a fold's own rows."""


def _head(labels: np.ndarray):
    """An unfitted fold head for `labels`: standardised features, then a logistic
    regression whose C is chosen by inner cross-validated log loss; with too few examples
    of a label for an inner split, the middle of HEAD_CS."""
    try:
        from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
        from sklearn.model_selection import StratifiedKFold
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        raise _missing_extra() from None

    counts = np.bincount(labels)
    inner = min(INNER_FOLDS, int(counts[counts > 0].min()))
    if inner < 2:
        return make_pipeline(StandardScaler(), LogisticRegression(
            C=HEAD_CS[len(HEAD_CS) // 2], max_iter=2000))
    return make_pipeline(StandardScaler(), LogisticRegressionCV(
        Cs=list(HEAD_CS), l1_ratios=(0,), scoring="neg_log_loss", max_iter=2000,
        cv=StratifiedKFold(inner, shuffle=True, random_state=0),  # a file may be sorted
        use_legacy_attributes=False))


def out_of_sample_probs(features: np.ndarray, labels: np.ndarray, *, folds: int,
                        seed: int, progress=None, stop=None) -> np.ndarray:
    """Class probabilities for every row from a head that never saw that row's label.
    `progress(done, folds)` after each fold; a set `stop` ends it between folds."""
    StratifiedKFold = _libraries()[1]
    counts = np.bincount(labels)
    present = counts[counts > 0]
    if len(present) < 2:  # a head has nothing to tell apart (scikit-learn would raise)
        raise DataError("The label check needs examples of at least two labels; every "
                        "example here has the same one.")
    folds = min(folds, int(present.min()))
    if folds < 2:
        raise DataError("Every label needs at least 2 examples for an out-of-sample check; "
                        "the audit lists the rare ones (rare_labels).")
    classes = len(counts)
    probs = np.zeros((len(labels), classes))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (fit_rows, held_rows) in enumerate(splitter.split(features, labels)):
        _check_stop(stop)
        head = _head(labels[fit_rows]).fit(features[fit_rows], labels[fit_rows])
        probs[np.ix_(held_rows, head[-1].classes_)] = head.predict_proba(features[held_rows])
        if progress is not None:
            progress(fold + 1, folds)
    return probs


def _check_stop(stop) -> None:
    if stop is not None and stop.is_set():
        from engine.data.examples import PreparationStopped

        raise PreparationStopped


def find_label_issues(features: np.ndarray, labels: Sequence[int], names: Sequence[str], *,
                      split: str, folds: int = 5, seed: int = 0,
                      rows: Sequence[int] | None = None, progress=None,
                      stop=None) -> list[LabelIssue]:
    """Likely label errors among `labels` (indices into `names`), most likely first.
    `rows` maps each example to its row in the file (default: its position)."""
    cleanlab_issues = _libraries()[0]
    labels = np.asarray(labels, dtype=int)
    rows = list(range(len(labels))) if rows is None else list(rows)
    # Only the labels that occur: cleanlab wants every class column to have examples.
    used = np.unique(labels)
    dense = np.searchsorted(used, labels)
    probs = out_of_sample_probs(np.asarray(features, dtype=np.float64), dense,
                                folds=folds, seed=seed, progress=progress, stop=stop)
    ranked = cleanlab_issues(dense, probs, return_indices_ranked_by="self_confidence")
    issues = []
    for i in ranked:
        best = int(probs[i].argmax())
        issues.append(LabelIssue(split, rows[i], names[used[dense[i]]], names[used[best]],
                                 round(float(probs[i, best]), 4)))
    return issues


MULTI_SEPARATOR = "|"
"""Joins a multi-label example's label names in `LabelIssue.label` and `.suggested`."""


def find_multilabel_issues(features: np.ndarray, label_sets: Sequence[Sequence[int]],
                           names: Sequence[str], *, split: str, folds: int = 5,
                           seed: int = 0, rows: Sequence[int] | None = None,
                           progress=None, stop=None) -> list[LabelIssue]:
    """Likely label errors of multi-label examples (each a set of indices into `names`),
    most likely first: cleanlab's multi-label filter over out-of-sample per-label
    probabilities (one logistic regression per label). The suggested set holds the labels
    whose probability reaches 0.5; the confidence is the least certain of those per-label
    decisions."""
    cleanlab_issues = _libraries()[0]
    try:  # the audit extra, as _libraries says
        from sklearn.model_selection import KFold
    except ImportError:
        raise _missing_extra() from None

    rows = list(range(len(label_sets))) if rows is None else list(rows)
    targets = np.zeros((len(label_sets), len(names)), dtype=int)
    for i, chosen in enumerate(label_sets):
        targets[i, list(chosen)] = 1
    counts = targets.sum(0)
    if not ((counts > 0) & (counts < len(targets))).any():
        raise DataError("The label check needs a label that some examples have and others "
                        "lack; every example here has the same labels.")
    folds = max(2, min(folds, len(targets) // 2))
    features = np.asarray(features, dtype=np.float64)
    probs = np.zeros(targets.shape)
    for fold, (fit_rows, held_rows) in enumerate(
            KFold(n_splits=folds, shuffle=True, random_state=seed).split(features)):
        _check_stop(stop)
        for k in range(len(names)):
            column = targets[fit_rows, k]
            if column.min() == column.max():  # a label all or none of a fold's rows have
                probs[held_rows, k] = float(column[0])
                continue
            head = _head(column).fit(features[fit_rows], column)
            probs[held_rows, k] = head.predict_proba(features[held_rows])[:, 1]
        if progress is not None:
            progress(fold + 1, folds)
    ranked = cleanlab_issues([list(s) for s in label_sets], probs, multi_label=True,
                             return_indices_ranked_by="self_confidence")
    issues = []
    for i in ranked:
        given = MULTI_SEPARATOR.join(names[k] for k in sorted(label_sets[i]))
        best = np.flatnonzero(probs[i] >= 0.5)
        sure = float(np.minimum(probs[i], 1 - probs[i]).max())
        issues.append(LabelIssue(split, rows[int(i)], given,
                                 MULTI_SEPARATOR.join(names[k] for k in best),
                                 round(1 - sure, 4)))
    return issues


def normalised(text: str) -> str:
    """`text` with runs of whitespace made one space and case folded."""
    return " ".join(str(text).split()).casefold()


def _unit(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, 1e-12)


def _near_pairs(a: np.ndarray, b: np.ndarray, threshold: float, *, same: bool):
    """(i, j, similarity) for rows of unit features `a` and `b` at or above `threshold`
    (with `same`, a and b are one set: each pair once, never a row with itself)."""
    step = _chunk(len(b))
    for start in range(0, len(a), step):
        sims = a[start:start + step] @ b.T
        for i, j in zip(*np.nonzero(sims >= threshold), strict=True):
            i = int(i) + start
            if not same or i < j:
                yield i, int(j), float(sims[i - start, j])


def find_duplicates(texts: Sequence[str], features: np.ndarray | None, *, split: str,
                    threshold: float = NEAR_DUPLICATE_SIMILARITY,
                    rows: Sequence[int] | None = None) -> list[Duplicate]:
    """Groups of rows with equal inputs (exact), then groups joined by similar features
    that are not already one exact group (near); largest groups first."""
    rows = list(range(len(texts))) if rows is None else list(rows)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(texts):
        key = normalised(text)
        if key:
            groups[key].append(i)
    exact = [g for g in groups.values() if len(g) > 1]
    found = [Duplicate(split, tuple(rows[i] for i in g), "exact") for g in exact]
    if features is None or len(texts) < 2:
        return sorted(found, key=lambda d: -len(d.rows))
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for g in exact:  # an exact group is one node: near joins beyond it
        for i in g[1:]:
            parent[root(i)] = root(g[0])
    unit = _unit(features)
    for i, j, _ in _near_pairs(unit, unit, threshold, same=True):
        a, b = root(i), root(j)
        if a != b:
            parent[a] = b
    clusters: dict[int, list[int]] = defaultdict(list)
    for i in range(len(texts)):
        clusters[root(i)].append(i)
    exact_sets = {frozenset(g) for g in exact}
    for members in clusters.values():
        if len(members) > 1 and frozenset(members) not in exact_sets:
            found.append(Duplicate(split, tuple(rows[i] for i in members), "near"))
    return sorted(found, key=lambda d: -len(d.rows))


def find_leaks(train_texts: Sequence[str], validation_texts: Sequence[str],
               train_features: np.ndarray | None = None,
               validation_features: np.ndarray | None = None, *,
               threshold: float = NEAR_DUPLICATE_SIMILARITY,
               train_rows: Sequence[int] | None = None,
               validation_rows: Sequence[int] | None = None) -> list[Leak]:
    """Validation rows that are also training rows: equal inputs (similarity 1.0), else
    the most similar training row when its features reach `threshold`."""
    train_rows = list(range(len(train_texts))) if train_rows is None else list(train_rows)
    validation_rows = (list(range(len(validation_texts))) if validation_rows is None
                       else list(validation_rows))
    first: dict[str, int] = {}
    for i, text in enumerate(train_texts):
        first.setdefault(normalised(text), i)
    leaks: dict[int, Leak] = {}
    for v, text in enumerate(validation_texts):
        t = first.get(normalised(text))
        if t is not None and normalised(text):
            leaks[v] = Leak(train_rows[t], validation_rows[v], 1.0)
    if train_features is not None and validation_features is not None and len(train_texts):
        train_unit, val_unit = _unit(train_features), _unit(validation_features)
        step = _chunk(len(train_unit))
        for start in range(0, len(val_unit), step):
            sims = val_unit[start:start + step] @ train_unit.T
            best = sims.argmax(axis=1)
            for k, t in enumerate(best):
                v, similarity = start + k, float(sims[k, t])
                if similarity >= threshold and v not in leaks:
                    leaks[v] = Leak(train_rows[int(t)], validation_rows[v],
                                    round(min(similarity, 1.0), 4))
    return sorted(leaks.values(), key=lambda leak: (-leak.similarity, leak.validation_row))


def degenerate_inputs(texts: Sequence[str], *, split: str,
                      rows: Sequence[int] | None = None) -> list[dict]:
    """Inputs a model can learn nothing from: empty, only whitespace or punctuation, or one
    character repeated."""
    rows = list(range(len(texts))) if rows is None else list(rows)
    found = []
    for i, text in enumerate(texts):
        key = normalised(text)
        reason = ("empty" if not key else
                  "no letters or digits" if not any(c.isalnum() for c in key) else
                  "one character repeated" if len(key) > 1 and len(set(key)) == 1 else None)
        if reason:
            found.append({"split": split, "row": rows[i], "reason": reason})
    return found


def rare_labels(labels: Sequence[int], names: Sequence[str], *, minimum: int) -> list[dict]:
    """Labels with fewer than `minimum` examples (those present at all), fewest first."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(names))
    return [{"label": names[i], "count": int(c)}
            for i, c in sorted(enumerate(counts), key=lambda ic: ic[1]) if 0 < c < minimum]
