"""The run panel's details and errors views (PgUp / PgDn scroll them from the table), and
its layout at 80x24 and 120x40: the event log wraps again on resize and the stats line
never splits an item."""

from __future__ import annotations

import functools

import pytest

from engine.core.config import RunConfig
from engine.trained.review import validation_inputs
from tests.support.pilot_wait import wait_for as _wait_for
from tests.support.tiny_models import write_sentiment_csv
from tui.app import make_app

wait_for = functools.partial(_wait_for, timeout=30.0)
pytestmark = pytest.mark.slow  # whole TUI sessions


def _seed(store, tmp_path) -> tuple[int, int]:
    """A run and a fork of it with per-example results recorded, as a worker would."""
    csv = write_sentiment_csv(tmp_path / "tweets.csv", rows=40)
    cfg = RunConfig.from_dict({"name": "base", "model": {"id": "org/tiny"},
                               "data": {"train": str(csv), "validation_split": 0.25}})
    parent = store.create_run(cfg.to_dict(), name="base", task="text-classification")
    forked = cfg.to_dict()
    forked["data"]["limit"] = 600
    child = store.create_run(forked, name="base-fork", parent_id=parent,
                             task="text-classification", model_id="org/tiny")
    store.set_tags(child, ["lr-sweep"])
    store.log_metrics(child, [(s, s / 10, "loss", 1 / s, 0.0) for s in range(1, 21)] + [
        (20, 2.0, name, value, 0.0) for name, value in (
            ("total_steps", 20), ("lr", 1e-5), ("samples_per_s", 123.4),
            ("tokens_per_s", 4567.0), ("val_accuracy", 0.8), ("val_macro_f1", 0.79))])
    store.add_event(child, "a long event line " * 12)
    inputs = validation_inputs(cfg)
    rows = [(i, x.label if i else "confused", x.label, 0.9, 2.0 if i == 0 else 0.1)
            for i, x in enumerate(inputs)]
    store.replace_predictions(child, 20, len(inputs), "cross_entropy", rows)
    store.finish(child, "completed", summary={"final_accuracy": 0.8})
    return parent, child


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_details_and_errors_views(store, tmp_path, size):
    parent, child = _seed(store, tmp_path)
    app = make_app(store=store)
    async with app.run_test(size=size) as pilot:
        screen = app.screen
        summary = screen.query_one("#detail-summary")
        await wait_for(pilot, lambda: "base-fork" in str(summary.render()))
        # Items stay whole: no line of the panel ends inside "loss 0.050".
        text = str(summary.render())
        assert "loss 0.050" in text and "macro_f1 0.790" in text and "lr 1.00e-05" in text

        await pilot.press("d")
        info = screen.query_one("#info-text")
        await wait_for(pilot, lambda: "fork of" in str(info.render()))
        shown = str(info.render())
        assert f"run {parent} base" in shown and "data.limit  null → 600" in shown
        assert "lr-sweep" in shown and str(store.get_run(child).output_dir) in shown
        assert "model.id: org/tiny" in shown
        assert screen.query_one("#event-log").has_class("-hidden")
        # PgDn / PgUp scroll the view while the runs table keeps the keys and its row.
        table, box = screen.query_one("DataTable"), screen.query_one("#detail-info")
        row = table.cursor_row
        assert app.focused is table and box.max_scroll_y > 0
        await pilot.press("pagedown")
        await wait_for(pilot, lambda: box.scroll_y > 0)
        await pilot.press("pageup")
        await wait_for(pilot, lambda: box.scroll_y == 0)
        assert table.cursor_row == row

        await pilot.press("e")
        errors = screen.query_one("#errors-text")
        await wait_for(pilot, lambda: "worst" in str(errors.render()))
        shown = str(errors.render())
        assert "(1 wrong)" in shown and "→ confused" in shown
        assert "each: the true label → what the model predicted" in " ".join(shown.split())
        await pilot.press("e")  # back to the curves and events
        assert not screen.query_one("#detail-left").has_class("-hidden")
        await pilot.press("pagedown")  # with no view to scroll, the table pages
        await wait_for(pilot, lambda: table.cursor_row != row)


async def test_event_log_wraps_again_on_resize(store, tmp_path):
    _seed(store, tmp_path)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        log = app.screen.query_one("#event-log")
        await wait_for(pilot, lambda: len(log.lines) > 0)
        wide = len(log.lines)
        await pilot.resize_terminal(80, 24)
        await wait_for(pilot, lambda: len(log.lines) > wide)
        assert max(line.cell_length for line in log.lines) <= log.size.width
