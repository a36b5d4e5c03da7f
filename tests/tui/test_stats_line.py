"""The run panel's stats line (tui/widgets/run_detail.py): step, loss, learning rate, the
gradient norm the loop logs as `grad_norm` (#35: a blow-up shows before the loss curve
turns), and the speed while the run trains."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tui.widgets.run_detail import stats_parts


def test_the_stats_line_shows_the_gradient_norm_when_one_was_logged():
    running = SimpleNamespace(status="running", config={"train": {"learning_rate": 1e-4}})
    m = {"total_steps": 100.0, "loss": 0.41, "lr": 1e-4, "grad_norm": 0.8374,
         "samples_per_s": 12.34}
    assert stats_parts(m, running, 40) == ["step 40/100", "loss 0.410", "lr 1.00e-04",
                                           "grad norm 0.837", "12.3 samples/s"]
    del m["grad_norm"]  # none taken yet (clipping off, the interval not ended)
    assert not any("grad" in part for part in stats_parts(m, running, 40))
    done = SimpleNamespace(status="completed", config={})
    parts = stats_parts({"loss": 0.2, "grad_norm": 15234.0, "samples_per_s": 9.0}, done, 7)
    assert parts == ["step 7", "loss 0.200", "grad norm 15,234"]  # no speed once it ended


@pytest.mark.slow  # a whole TUI session
async def test_the_run_panel_shows_the_gradient_norm(store):
    from tests.support.pilot_wait import select_run, wait_for
    from tui.app import make_app

    run_id = store.create_run({"train": {"learning_rate": 2e-5}}, name="norms",
                              model_id="org/tiny", task="text-classification")
    store.set_status(run_id, "running")
    store.log_metrics(run_id, [(10, 0.5, "loss", 0.5, 0.0), (10, 0.5, "grad_norm", 3.25, 0.0),
                               (20, 1.0, "loss", 0.4, 0.0), (20, 1.0, "grad_norm", 0.75, 0.0)])
    store.set_queue_paused(True)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await select_run(pilot, run_id)
        summary = app.screen.query_one("#detail-summary")
        await wait_for(pilot, lambda: "loss " in str(summary.render()))
        text = " ".join(str(summary.render()).split())
        assert "loss 0.400" in text and "grad norm 0.750" in text  # the newest interval's
