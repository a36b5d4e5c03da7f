"""Per-example validation results: replaced whole, the worst first, gone with their run."""

from __future__ import annotations

import pytest

from store import LeaseLost


def _rows(n: int, wrong: set[int]):
    return [(i, "b" if i in wrong else "a", "a", 0.9, float(i)) for i in range(n)]


def test_rows_replace_the_previous_set_and_read_worst_first(store):
    run_id = store.create_run({"a": 1})
    assert store.prediction_set(run_id) is None and store.worst_examples(run_id) == []
    store.replace_predictions(run_id, 5, 10, "cross_entropy", _rows(10, {3}))
    store.replace_predictions(run_id, 9, 10, "cross_entropy", _rows(4, {1, 2}))
    recorded = store.prediction_set(run_id)
    assert (recorded.step, recorded.examples, recorded.stored) == (9, 10, 4)
    worst = store.worst_examples(run_id, 2)
    assert [r.example for r in worst] == [3, 2] and worst[1].correct is False
    assert sorted(store.example_results(run_id)) == [0, 1, 2, 3]


def test_a_resume_forgets_rows_of_later_steps_and_a_stale_lease_writes_nothing(store):
    run_id = store.create_run({"a": 1})
    lease = store.get_run(run_id).lease
    store.replace_predictions(run_id, 8, 3, "cross_entropy", _rows(3, set()), lease=lease)
    store.drop_predictions_after(run_id, 8)
    assert store.prediction_set(run_id).step == 8
    store.drop_predictions_after(run_id, 4)
    assert store.prediction_set(run_id) is None and store.example_results(run_id) == {}
    with pytest.raises(LeaseLost):
        store.replace_predictions(run_id, 9, 3, "cross_entropy", _rows(3, set()),
                                  lease="not-the-lease")
    assert store.prediction_set(run_id) is None


def test_deleting_a_run_deletes_its_rows(store):
    run_id = store.create_run({"a": 1})
    store.replace_predictions(run_id, 1, 2, "squared_error", [(0, "1", "2", None, 1.0)])
    store.delete_run(run_id)
    count = store.db.execute("SELECT count(*) FROM val_predictions").fetchone()[0]
    assert count == 0 and store.prediction_set(run_id) is None
