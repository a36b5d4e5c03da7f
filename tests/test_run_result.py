"""One number per run: the metric of the model a run keeps (its best evaluation's with
train.restore_best, else its last) is its result in `runs ls`, `runs show`, `runs
compare`, the TUI's table and panel, sweep ranking and the exported model card. Over a
real store, the runs recorded as a worker records them (no training)."""

from __future__ import annotations

import json
import os

import pytest

from engine.runs.sweep import rank_sweep
from engine.trained.export import model_card
from store import kept_metrics
from tests.support.cli_runner import hubtune

CONFIG = {"model": {"id": "org/tiny"}, "head": {"task": "text-classification"},
          "data": {"train": "t.csv"}, "train": {"restore_best": True}}


def _kept_best(store) -> int:
    """A completed run whose last evaluation (0.737) is worse than its best (0.763), which
    it kept (restore_best)."""
    run_id = store.create_run(CONFIG, name="kept-best", model_id="org/tiny",
                              task="text-classification")
    store.log_metrics(run_id, [(20, 1.0, "val_accuracy", 0.70, 0.0),
                               (40, 2.0, "val_accuracy", 0.763, 0.0),
                               (60, 3.0, "val_accuracy", 0.737, 0.0)])
    store.finish(run_id, "completed", summary={
        "steps": 60, "watched_metric": "accuracy", "best_step": 40, "model_step": 40,
        "kept_eval": "best", "best_accuracy": 0.763, "final_accuracy": 0.737,
        "best_loss": 0.5, "final_loss": 0.6})
    return run_id


def _kept_last(store) -> int:
    """restore_best off: the run keeps its last model, so its last evaluation is its result."""
    cfg = {**CONFIG, "train": {"restore_best": False}}
    run_id = store.create_run(cfg, name="kept-last", task="text-classification")
    store.finish(run_id, "completed", summary={
        "steps": 60, "watched_metric": "accuracy", "best_step": 40, "model_step": 60,
        "kept_eval": "final", "best_accuracy": 0.81, "final_accuracy": 0.75})
    return run_id


def _running(store) -> int:
    """A run still training, two evaluations in, the second worse than the first."""
    run_id = store.create_run(CONFIG, name="training", task="text-classification")
    store.claim(run_id, store.get_run(run_id).lease, pid=os.getpid(), host="here", env={})
    store.log_metrics(run_id, [(10, 0.5, "loss", 0.9, 0.0), (10, 0.5, "val_accuracy", 0.66, 0.0),
                               (20, 1.0, "val_accuracy", 0.61, 0.0)])
    return run_id


def test_the_kept_models_metric_is_the_result_in_ls_show_and_compare(store):
    best, last, running = _kept_best(store), _kept_last(store), _running(store)
    listed = {r["id"]: r for r in json.loads(hubtune("runs", "ls", "--json").stdout)}
    shown = json.loads(hubtune("runs", "show", str(best), "--json").stdout)
    compared = json.loads(hubtune("runs", "compare", str(best), str(last), "--json").stdout)
    assert listed[best]["result"]["value"] == shown["result"]["value"] == \
        compared["results"][0]["value"] == 0.763
    assert shown["result"] == {"metric": "accuracy", "value": 0.763, "of": "best evaluation",
                               "step": 40, "last_evaluation": 0.737}
    assert listed[last]["result"]["value"] == compared["results"][1]["value"] == 0.75
    assert listed[last]["result"]["of"] == "last evaluation"
    # A running run's result so far, from its first evaluation (its best: restore_best).
    assert listed[running]["result"]["value"] == 0.66
    assert listed[running]["summary"] == {}  # the recorded summary is left as it is
    # Old keys keep their meaning: final_ is the last evaluation.
    assert shown["summary"]["final_accuracy"] == 0.737

    table = hubtune("runs", "ls").stdout
    row = next(line for line in table.splitlines() if "kept-best" in line)
    assert "acc 0.763" in row and "0.737" not in row
    assert "RESULT" in table.splitlines()[0]
    text = hubtune("runs", "show", str(best)).stdout
    assert "result   accuracy 0.763 (the kept model: best evaluation, step 40)" in text
    assert "last evaluation  accuracy 0.737" in text
    compare = hubtune("runs", "compare", str(best), str(last)).stdout
    assert "acc 0.763" in compare and "acc 0.750" in compare


def test_sweep_ranking_and_the_model_card_use_the_kept_model(store):
    best, last = _kept_best(store), _kept_last(store)
    runs = [store.get_run(best), store.get_run(last)]
    # By best values `last` (0.81) would win; by the models they keep `best` (0.763) does.
    ranked = rank_sweep(runs)
    assert [(p.run.id, p.value) for p in ranked] == [(best, 0.763), (last, 0.75)]
    card = model_card({"task": "text-classification"}, CONFIG, runs[0].summary, "kept-best",
                      "AutoModelForSequenceClassification")
    assert "| accuracy | 0.7630 |" in card and "0.7370" not in card


def test_kept_metrics_reads_runs_recorded_before_it():
    assert kept_metrics({"model_step": 60, "best_step": 40, "best_accuracy": 0.8,
                         "final_accuracy": 0.7}) == ("final", {"accuracy": 0.7})
    assert kept_metrics({"model_step": 40, "best_step": 40, "best_accuracy": 0.8,
                         "final_accuracy": 0.7}) == ("best", {"accuracy": 0.8})
    assert kept_metrics({"best_accuracy": 0.8, "final_accuracy": 0.7})[1] == {"accuracy": 0.8}
    assert kept_metrics({"final_accuracy": 0.7}) == ("final", {"accuracy": 0.7})
    assert kept_metrics({"final_accuracy": 0.7, "best_loss": 0.2})[1] == {"accuracy": 0.7,
                                                                         "loss": 0.2}


@pytest.mark.slow
async def test_the_tui_shows_the_kept_models_metric_and_fills_best_while_running(store):
    from textual.widgets import DataTable, Static

    from tests.support.pilot_wait import wait_for
    from tui.app import make_app

    best, running = _kept_best(store), _running(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        assert str(table.get_cell(str(best), "best")) == "acc 0.763"
        assert str(table.get_cell(str(running), "best")) == "acc 0.660"
        table.move_cursor(row=table.get_row_index(str(best)))
        summary = app.screen.query_one("#detail-summary", Static)
        await wait_for(pilot, lambda: "kept-best" in str(summary.render()))
        text = str(summary.render())
        assert "result acc 0.763 (kept model: best evaluation, step 40)" in text
        last = next(line for line in text.splitlines() if line.startswith("last evaluation:"))
        assert "accuracy 0.737" in last
        # Compared side by side, a column per run by id.
        table.move_cursor(row=0)
        await pilot.press("space", "space")
        assert app.screen.marked == {best, running}, (app.screen.marked, app.focused)
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CompareScreen")
        cmp_table = app.screen.query_one("#compare-table", DataTable)
        rows = {str(cmp_table.get_row_at(i)[0]): [str(c) for c in cmp_table.get_row_at(i)[1:]]
                for i in range(cmp_table.row_count)}
        assert rows["result (kept model)"] == ["acc 0.763 (best evaluation)",
                                               "acc 0.660 (best evaluation)"]
