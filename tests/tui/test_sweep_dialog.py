"""The new-run form's sweep dialog (F5, issue #35 item 4): a sweep over the form's config,
checked with the CLI's parsers and queued as `hubtune sweep` queues one. The queue stays
paused, so no worker starts."""

from __future__ import annotations

import functools

import pytest
from textual.widgets import Button, Input, Select, Static, TextArea

from engine.core.config import RunConfig
from engine.core.errors import ConfigError
from engine.runs.sweep import parse_range
from tests.support.pilot_wait import wait_for as _wait_for
from tests.tui.test_new_run_screen import type_into
from tui.app import make_app
from tui.sweep_form import plan_sweep

wait_for = functools.partial(_wait_for, timeout=30.0)


async def _open_dialog(app, pilot, tiny_bert, sentiment_csv, *, key: bool = True):
    await pilot.press("3")
    form = app.screen
    await type_into(pilot, "f-name", "lr")
    await type_into(pilot, "f-model", str(tiny_bert))
    await type_into(pilot, "f-train-file", str(sentiment_csv))
    sweep = form.query_one("#sweep", Button)
    await wait_for(pilot, lambda: not sweep.disabled)
    if key:
        await pilot.press("f5")
    else:  # the Sweep… button beside Queue
        sweep.scroll_visible(animate=False)
        await pilot.pause()
        await pilot.click(sweep)
    await wait_for(pilot, lambda: app.screen.__class__.__name__ == "SweepScreen")
    return app.screen


async def _fill(pilot, dialog, *, kind: str, trials: str, space: str) -> None:
    dialog.query_one("#sweep-kind", Select).value = kind
    dialog.query_one("#sweep-trials", Input).value = trials
    dialog.query_one("#sweep-space", TextArea).load_text(space)
    await pilot.pause()
    await pilot.click("#sweep-ok")
    await pilot.pause()


@pytest.mark.slow
async def test_a_random_sweep_from_the_form_queues_its_runs(store, tiny_bert, sentiment_csv):
    store.set_queue_paused(True)
    app = make_app(store=store)
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        dialog = await _open_dialog(app, pilot, tiny_bert, sentiment_csv)
        await _fill(pilot, dialog, kind="random", trials="3",
                    space="train.learning_rate=1e-5:1e-3:log\n")
        await wait_for(pilot, lambda: store.count_runs() == 3)
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")
        runs = store.list_runs(limit=None)
        sweep_ids = {r.sweep_id for r in runs}
        assert len(sweep_ids) == 1 and None not in sweep_ids
        rates = [r.config["train"]["learning_rate"] for r in runs]
        assert len(set(rates)) == 3 and all(1e-5 <= lr <= 1e-3 for lr in rates)
        assert {r.status for r in runs} == {"queued"}
        assert sorted(r.name for r in runs) == ["lr-1", "lr-2", "lr-3"]
        (sweep_id,) = sweep_ids
        box = app.screen.query_one("#run-search", Input)
        await wait_for(pilot, lambda: box.value == f"sweep:{sweep_id}")
        assert any(sweep_id in n.message for n in app._notifications)


@pytest.mark.slow
async def test_a_bad_range_line_is_shown_and_queues_nothing(store, tiny_bert, sentiment_csv):
    store.set_queue_paused(True)
    bad = "train.learning_rate=1e-3:1e-5"
    with pytest.raises(ConfigError) as said:
        parse_range(bad)
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        dialog = await _open_dialog(app, pilot, tiny_bert, sentiment_csv, key=False)
        await _fill(pilot, dialog, kind="random", trials="3", space=bad)
        error = dialog.query_one("#sweep-error", Static)
        await wait_for(pilot, lambda: not error.has_class("-hidden"))
        assert str(said.value) in str(error.render()).replace("\n", " ")
        assert app.screen is dialog and store.count_runs() == 0


def test_plan_a_grid_and_a_search_over_a_config(sentiment_csv):
    """Without an app: the dialog's lines read as the CLI's --grid, --range and --choice."""
    cfg = RunConfig.from_dict({"name": "g", "model": {"id": "org/tiny"},
                               "data": {"train": str(sentiment_csv)}})
    plan = plan_sweep(cfg, kind="grid", space="train.epochs=1,2\ntrain.batch_size=4,8",
                      trials=None, parallel=None, prune="median")
    assert [(c.train.epochs, c.train.batch_size) for c in plan.configs] == [
        (1, 4), (1, 8), (2, 4), (2, 8)]
    search = plan_sweep(cfg, kind="tpe", space="train.learning_rate=1e-5:1e-3:log\n"
                        "train.batch_size=4,8", trials=6, parallel=2, prune="asha")
    assert [a.key for a in search.ranges] == ["train.learning_rate"] and search.ranges[0].log
    assert search.choices[0].values == ("4", "8") and search.trials == 6
    with pytest.raises(ConfigError, match="--search needs --trials"):
        plan_sweep(cfg, kind="tpe", space="train.epochs=1,2", trials=None, parallel=None,
                   prune="median")
    with pytest.raises(ConfigError, match="epochs"):  # a point that makes no config
        plan_sweep(cfg, kind="grid", space="train.epochs=1,zero", trials=None,
                   parallel=None, prune="median")


def test_a_search_from_the_dialog_queues_its_first_trials(store, sentiment_csv):
    """TPE: the spec saved beside the store, as many trials queued as run at once."""
    from engine.runs.search import load_spec
    from tui.sweep_form import queue_plan

    store.set_queue_paused(True)
    cfg = RunConfig.from_dict({"name": "s", "model": {"id": "org/tiny"},
                               "data": {"train": str(sentiment_csv)}})
    plan = plan_sweep(cfg, kind="tpe", space="train.learning_rate=1e-5:1e-3:log",
                      trials=4, parallel=2, prune="none")
    sweep_id, ids = queue_plan(store, plan)
    runs = [store.get_run(i) for i in ids]
    assert len(runs) == 2 and {r.sweep_id for r in runs} == {sweep_id}
    assert {r.status for r in runs} == {"queued"}
    spec = load_spec(sweep_id)
    assert spec.trials == 4 and spec.parallel == 2 and spec.prune == "none"
