"""One format for metric values, the headline learning rate and a run's start (#33, item 6):
plain functions, no app."""

from __future__ import annotations

from types import SimpleNamespace

from tui.formatting import learning_rate, metric, started


def test_metric_values_have_one_format():
    assert [metric(v) for v in (0.6, 0.683, 1.0, 0.0)] == ["0.600", "0.683", "1.000", "0.000"]
    assert metric(2.0, "epochs") == "2" and metric(40.0, "val_best_step") == "40"
    assert metric(2.5, "epochs") == "2.500"  # a count that is not whole stays exact enough
    assert metric(0.00004) == "4.00e-05" and metric(123456.7) == "123,457"
    assert metric(None) == "-" and metric(True) == "-" and metric(float("nan")) == "nan"


def test_the_headline_rate_is_the_base_one_and_says_when_groups_differ():
    plain = {"train": {"learning_rate": 2e-5}}
    assert learning_rate(1e-5, plain) == "lr 1.00e-05"
    # The loop logs the highest group's rate (the head's 1e-3, half way down its schedule).
    head = {"train": {"learning_rate": 2e-5, "head_learning_rate": 1e-3}}
    assert learning_rate(5e-4, head) == "lr 1.00e-05 (base; groups differ)"
    groups = {"train": {"learning_rate": 1e-4, "group_learning_rates": {"block.0": 1e-5}}}
    assert learning_rate(1e-4, groups) == "lr 1.00e-04 (base; groups differ)"
    assert learning_rate(3e-5, {}) == "lr 3.00e-05"


def test_a_run_starts_when_it_starts_not_when_it_was_queued():
    queued = SimpleNamespace(status="queued", started_utc=None,
                             created_utc="2026-11-04T09:00:00+00:00")
    assert started(queued) == "queued" and started(queued, seconds=True) == "queued"
    ran = SimpleNamespace(status="completed", started_utc="2026-11-04T09:05:07+00:00")
    assert started(ran) == "11-04 09:05" and started(ran, seconds=True) == "2026-11-04 09:05:07"
    never = SimpleNamespace(status="failed", started_utc=None)
    assert started(never) == "-"
