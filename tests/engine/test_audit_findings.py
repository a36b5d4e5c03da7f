"""The audit's findings (engine/audit/findings.py) on data whose faults are known: labels
flipped at random rank first among the label issues, and injected duplicates, leaks and
degenerate inputs are found, with rows numbered as given."""

from __future__ import annotations

import numpy as np
import pytest

from engine.audit.findings import (
    degenerate_inputs,
    find_duplicates,
    find_label_issues,
    find_leaks,
    normalised,
    rare_labels,
)
from engine.core.errors import DataError

NAMES = ["negative", "neutral", "positive"]


def clustered(n: int, seed: int, dims: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """`n` examples in three well separated clusters, labelled by cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, size=(3, dims))
    labels = rng.integers(0, 3, size=n)
    return centres[labels] + rng.normal(0, 1, size=(n, dims)), labels


def test_flipped_labels_rank_first_with_the_true_label_suggested():
    features, truth = clustered(300, seed=1)
    rng = np.random.default_rng(2)
    flipped = rng.choice(300, size=15, replace=False)
    noisy = truth.copy()
    noisy[flipped] = (truth[flipped] + rng.integers(1, 3, size=15)) % 3
    rows = [10 + i for i in range(300)]  # file rows need not be positions
    issues = find_label_issues(features, noisy, NAMES, split="train", folds=5, seed=0,
                               rows=rows)
    top = {issue.row - 10 for issue in issues[:15]}
    assert len(top & set(flipped.tolist())) >= 14, "the flipped rows do not rank first"
    by_row = {issue.row - 10: issue for issue in issues}
    for i in flipped:
        if i in by_row:
            assert by_row[i].suggested == NAMES[truth[i]]
            assert by_row[i].label == NAMES[noisy[i]] != by_row[i].suggested
            assert 0.5 < by_row[i].confidence <= 1.0
    assert len(issues) < 40, "clean rows were flagged wholesale"


def test_weakly_separated_wide_features_flag_mostly_flipped_rows():
    # Like frozen text features: 100 dimensions, 4 of them informative, 240 rows per
    # fold head. A weakly regularised head (C=1) is overconfident here and flagged 77
    # rows of which 27 were flipped (precision 0.35); the head's C is chosen per fold.
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 2, 300)
    features = rng.normal(size=(300, 100))
    features[:, :4] += 1.2 * (2 * truth[:, None] - 1)
    flipped = set(rng.choice(300, 30, replace=False).tolist())
    noisy = truth.copy()
    noisy[list(flipped)] = 1 - noisy[list(flipped)]
    flagged = {issue.row for issue in find_label_issues(features, noisy, NAMES[::2],
                                                        split="train")}
    assert len(flagged & flipped) / len(flagged) >= 0.6, "clean rows were flagged wholesale"
    assert len(flagged & flipped) / len(flipped) >= 0.7, "the flipped rows were missed"


def test_a_label_with_a_single_example_is_a_sentence_not_a_crash():
    features, labels = clustered(20, seed=3)
    labels[:] = 0
    labels[0] = 1
    with pytest.raises(DataError, match="at least 2 examples"):
        find_label_issues(features, labels, NAMES, split="train")
    assert rare_labels(labels, NAMES, minimum=5) == [{"label": "neutral", "count": 1}]


def test_exact_duplicates_ignore_whitespace_and_case_and_near_ones_use_features():
    texts = ["Great film!", "awful", "great   FILM!", "meh", "A fine day", "a fine day "]
    features = np.eye(6, dtype=np.float32)
    features[3] = features[1] * 0.9 + features[3] * 0.1  # "meh" close to "awful"
    found = find_duplicates(texts, features, split="train", threshold=0.98)
    exact = {d.rows for d in found if d.kind == "exact"}
    near = {d.rows for d in found if d.kind == "near"}
    assert exact == {(0, 2), (4, 5)}
    assert near == {(1, 3)}
    assert find_duplicates(texts, None, split="train", rows=range(100, 106))[0].rows in \
        {(100, 102), (104, 105)}


def test_validation_rows_that_are_training_rows_are_leaks():
    train = ["the plot was thin", "loved it", "would not watch again"]
    validation = ["Loved   it", "a new review", "something else"]
    train_f = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    val_f = np.array([[0, 1, 0], [0.05, 0, 1], [1, 1, 1]], dtype=np.float32)
    leaks = find_leaks(train, validation, train_f, val_f, threshold=0.98,
                       validation_rows=[7, 8, 9])
    assert [(leak.train_row, leak.validation_row) for leak in leaks] == [(1, 7), (2, 8)]
    assert leaks[0].similarity == 1.0 and 0.98 <= leaks[1].similarity < 1.0


def test_degenerate_inputs_are_named_by_what_is_wrong():
    texts = ["fine text", "", "   ", "!!!", "aaaaaa", "ok"]
    found = degenerate_inputs(texts, split="validation")
    assert [(d["row"], d["reason"]) for d in found] == [
        (1, "empty"), (2, "empty"), (3, "no letters or digits"), (4, "one character repeated")]
    assert normalised("  Hello \n  World ") == "hello world"


def test_a_split_with_one_label_is_a_sentence_not_a_crash():
    features, labels = clustered(20, seed=4)
    labels[:] = 2
    with pytest.raises(DataError, match="at least two labels"):
        find_label_issues(features, labels, NAMES, split="train")
