"""The runs screen driven by keys through Pilot, over a real store."""

from __future__ import annotations

import os

import pytest
from textual.widgets import DataTable, Input, RichLog, Static

from store import RunStore
from tests.support.pilot_wait import field, select_run, settle, wait_for
from tests.support.seed import seed_runs
from tui.app import make_app

pytestmark = pytest.mark.slow


async def test_lists_runs_and_shows_the_selected_one(store):
    ids = seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        assert [k.value for k in table.rows] == [str(i) for i in reversed(ids)]
        summary = app.screen.query_one("#detail-summary", Static)
        await wait_for(pilot, lambda: "digits-vit" in str(summary.render()))
        await pilot.press("down")
        await wait_for(pilot, lambda: "tweets-frozen" in str(summary.render()))
        assert "does not exist" in str(summary.render())
        log = app.screen.query_one("#event-log", RichLog)
        await wait_for(pilot, lambda: len(log.lines) >= 1)


async def test_runs_started_elsewhere_appear_live(store):
    app = make_app(store=store)
    async with app.run_test(size=(100, 30)) as pilot:
        table = app.screen.query_one(DataTable)
        empty = app.screen.query_one("#runs-empty")
        await wait_for(pilot, lambda: table.layout_shown is not None)  # the first listing
        assert table.row_count == 0 and not empty.has_class("-hidden")
        # Another process (a CLI `hubtune train`) records a run.
        other = RunStore(store.path)
        run_id = other.create_run({"a": 1}, name="from-cli")
        other.close()
        await wait_for(pilot, lambda: table.row_count == 1)
        assert str(table.get_row(str(run_id))[2]) == "from-cli"
        assert empty.has_class("-hidden")


async def test_a_run_finishing_elsewhere_widens_its_cells(store):
    """Cells updated in place grow their column: "completed" is not cut to "runnin"."""
    other = RunStore(store.path)
    run_id = other.create_run({"a": 1}, name="cli-run", task="text-classification")
    other.claim(run_id, other.get_run(run_id).lease, pid=os.getpid(), host="elsewhere", env={})
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        other.finish(run_id, "completed", summary={"best_accuracy": 0.8125})
        await wait_for(pilot, lambda: "completed" in str(table.get_cell(str(run_id), "status")))

        def wide_enough(key: str) -> bool:
            cell = str(table.get_cell(str(run_id), key))
            return table.columns[key].get_render_width(table) - 2 * table.cell_padding \
                >= len(cell)

        # The table re-measures an updated column at its next refresh, not at once.
        await wait_for(pilot, lambda: wide_enough("status") and wide_enough("best"))
        for key, text in (("status", "completed"), ("best", "acc 0.812")):
            assert text in str(table.get_cell(str(run_id), key))
    other.close()


async def test_a_running_runs_duration_ticks_in_the_table(store):
    other = RunStore(store.path)
    run_id = other.create_run({"a": 1}, name="ticking")
    other.claim(run_id, other.get_run(run_id).lease, pid=os.getpid(), host="elsewhere", env={})
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        first = str(table.get_cell(str(run_id), "duration"))
        step = 0

        def ticked() -> bool:
            nonlocal step
            step += 1  # the worker logging, as a live run does
            other.log_metrics(run_id, [(step, 0.0, "loss", 1.0, 0.0)])
            return str(table.get_cell(str(run_id), "duration")) != first

        await wait_for(pilot, ticked)
    other.close()


async def test_search_filters_the_table(store):
    seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"digits")
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.row_count == 3)


async def test_sort_by_name_and_best_metric_and_filter_by_status(store):
    first, failed, stopped = seed_runs(store)
    perplexity = store.create_run({"head": {"task": "masked-lm"}}, name="a-mlm",
                                  task="masked-lm", dataset="/data/corpus.txt")
    store.finish(perplexity, "completed", summary={"best_perplexity": 12.5})
    app = make_app(store=store)
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 4)

        def order() -> list[int]:
            return [int(k.value) for k in table.rows]

        assert order() == [perplexity, stopped, failed, first]  # newest first
        assert str(table.get_row(str(perplexity))[5]) == "corpus.txt"
        assert str(table.get_row(str(perplexity))[6]) == "ppl 12.500"  # one format
        assert str(table.get_row(str(first))[6]) == "acc 0.731"
        await pilot.press("o")  # by name
        await wait_for(pilot, lambda: order() == [perplexity, stopped, first, failed])
        assert "by name" in app.screen.sub_title
        for _ in range(4):  # status, model, task, best metric
            await pilot.press("o")
        # Best first within each metric's direction; a run with no metric last.
        await wait_for(pilot, lambda: order()[-1] == failed)
        assert order().index(stopped) < order().index(first)  # acc 0.912 before 0.731
        await pilot.press("v")  # running only: none
        await wait_for(pilot, lambda: table.row_count == 0)
        await pilot.press("v")  # completed only
        await wait_for(pilot, lambda: sorted(order()) == sorted([first, perplexity]))
        assert "completed only" in app.screen.sub_title
        await pilot.press("o")  # back to newest first, still completed only
        await wait_for(pilot, lambda: order() == [perplexity, first])


async def test_delete_asks_first_and_then_removes(store):
    ids = seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("x")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")
        await settle(pilot)  # whatever "n" set going has finished
        assert store.count_runs() == 3
        await pilot.press("x")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: table.row_count == 2)
        assert ids[-1] not in [r.id for r in store.list_runs()]


async def test_stop_asks_and_records_the_request(store):
    run_id = store.create_run({"a": 1}, name="live")
    store.claim(run_id, store.get_run(run_id).lease, pid=os.getpid(), host="elsewhere", env={})
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: store.stop_requested(run_id))


async def test_stopping_a_finished_run_is_a_plain_notice(store):
    seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("s")
        await wait_for(pilot, lambda: any("only a queued or running run can be stopped" in n.message
                                          for n in app._notifications))
        await settle(pilot)
        assert app.screen.__class__.__name__ == "RunsScreen"  # and no question was asked


async def test_help_screen_opens_and_closes(store):
    app = make_app(store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "HelpScreen")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")


async def test_mark_two_runs_and_compare_them(store):
    ids = seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("c")
        await wait_for(pilot, lambda: any("Mark two or more runs" in n.message
                                          for n in app._notifications))
        await pilot.press("space", "space")  # marks run 3, moves down, marks run 2
        assert app.screen.marked == {ids[2], ids[1]}
        assert str(table.get_cell(str(ids[2]), "id")).startswith("●")
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CompareScreen")
        cmp_table = app.screen.query_one("#compare-table", DataTable)
        rows = [str(cmp_table.get_row_at(i)[0]) for i in range(cmp_table.row_count)]
        assert any("model.id" in r for r in rows) and any("head.task" in r for r in rows)
        loss = app.screen.query_one("#compare-loss")
        assert {c.label.split()[0] for c in loss.series} == {f"#{ids[2]}", f"#{ids[1]}"}
        assert all(len(c.values) > 1 for c in loss.series)  # both runs' curves overlaid
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")


async def test_fork_opens_the_form_prefilled_and_records_the_parent(store, tiny_bert,
                                                                    sentiment_csv):
    from engine.core.config import RunConfig

    cfg = RunConfig.from_dict({"name": "base", "model": {"id": str(tiny_bert)},
                               "data": {"train": str(sentiment_csv), "max_length": 32},
                               "train": {"epochs": 1, "log_every": 7}})
    parent = store.create_run(cfg.to_dict(), name="base", model_id=str(tiny_bert))
    store.finish(parent, "completed")
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("f")
        # The form is shown before the action that opened it fills it in: wait for that.
        await wait_for(pilot, lambda: field(app, "#f-name") == "base-fork")
        form = app.screen
        assert form.query_one("#f-model").value == str(tiny_bert)
        form.query_one("#f-lr").value = "0.002"
        launch = form.query_one("#launch")
        await wait_for(pilot, lambda: not launch.disabled)
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: store.count_runs() == 2)
        child = store.list_runs()[0]
        assert child.parent_id == parent and child.config["train"]["log_every"] == 7
        assert child.config["train"]["learning_rate"] == 0.002


async def test_resume_from_the_tui_refuses_a_run_without_checkpoint(store):
    ids = seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await pilot.press("R")
        await wait_for(pilot, lambda: any("has no checkpoint to resume from" in n.message
                                          for n in app._notifications))
        assert store.get_run(ids[2]).status == "stopped"


async def test_playground_predicts_with_a_completed_run(store, tiny_config):
    """A real run trained by the engine, then typed at in the playground."""
    import threading

    from engine.core.config import load_config
    from engine.training.loop import train
    from store import run_dir

    cfg = load_config(tiny_config, ["train.epochs=6"])
    run_id = store.create_run(cfg.to_dict(), name="play", task=cfg.head.task)
    outcome = train(cfg, lambda e: None, threading.Event(), out_dir=run_dir(run_id))
    store.finish(run_id, outcome.status, summary=outcome.summary)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 1)
        await pilot.press("p")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "PlaygroundScreen")
        for key in "the food was awful":
            await pilot.press("space" if key == " " else key)
        await pilot.press("enter")
        out = app.screen.query_one("#playground-output")
        await wait_for(pilot, lambda: "negative" in str(out.render())
                       and "Loading" not in str(out.render()), timeout=60)
        lines = str(out.render()).splitlines()
        assert lines[0].startswith("negative") and "positive" in "\n".join(lines[1:])
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")


async def test_tags_and_notes_are_edited_and_searchable(store):
    ids = seed_runs(store)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        await select_run(pilot, ids[1])
        await pilot.press("t")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "EditScreen")
        await pilot.press(*["space" if c == " " else c for c in "baseline, lr-sweep"], "enter")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "EditScreen")
        await pilot.press(*"diverged", "enter")
        await wait_for(pilot, lambda: store.get_run(ids[1]).notes == "diverged")
        assert store.get_run(ids[1]).tags == ("baseline", "lr-sweep")
        summary = app.screen.query_one("#detail-summary")
        await wait_for(pilot, lambda: "lr-sweep" in str(summary.render())
                       and "diverged" in str(summary.render()))
        await pilot.press("slash", *"lr-sweep")
        await wait_for(pilot, lambda: table.row_count == 1)


async def test_markup_in_user_text_is_shown_literally(store):
    """Names, tags, notes and errors are the user's text, never markup for the UI."""
    ids = seed_runs(store)
    store.set_tags(ids[2], ["[/x]"])
    store.set_notes(ids[2], "see [/oops] and [b]")
    store.db.execute("UPDATE runs SET name = ? WHERE id = ?", ["odd [/name]", ids[2]])
    store.db.conn.commit()
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        summary = app.screen.query_one("#detail-summary")
        await wait_for(pilot, lambda: "see [/oops] and [b]" in str(summary.render()))
        text = str(summary.render())
        assert "odd [/name]" in text and "[/x]" in text


def test_compare_marks_the_lowest_perplexity_and_loss_but_the_highest_accuracy():
    from tui.screens.compare import _best

    assert _best("best_perplexity", [12.5, 20.0, None]) == 12.5
    assert _best("val_loss", [0.4, 0.3]) == 0.3
    assert _best("final_mse", [2.0, 1.0]) == 1.0
    assert _best("final_accuracy", [0.7, 0.9]) == 0.9
    assert _best("best_micro_f1", [0.2, 0.6]) == 0.6
    assert _best("steps", [10, 20]) is None


async def test_stop_resume_and_stop_again_from_elsewhere(store, tiny_bert, sentiment_csv,
                                                         tmp_path):
    """A real worker stopped from the TUI, resumed with R, then stopped by the CLI: each
    process sees the others' writes (a resumed worker once missed them all, see
    tests/store: a second store in a process used to drop the first one's locks)."""
    import subprocess
    import sys

    from engine.launch.start import start_run
    from tests.support.tests_helpers import config_for

    run_id = start_run(store, config_for(tmp_path, tiny_bert, sentiment_csv, epochs=200))
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.screen.query_one(DataTable)

        def status() -> str:
            return str(table.get_cell(str(run_id), "status")) if table.row_count else ""

        await wait_for(pilot, lambda: "loss" in store.latest_metrics(run_id), timeout=120)
        await pilot.press("s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: status() == "stopped", timeout=60)
        stopped_at = store.get_run(run_id).summary.get("steps", 0)
        await pilot.press("R")
        await wait_for(pilot, lambda: status() == "running", timeout=60)
        await wait_for(pilot, lambda: store.get_run(run_id).stop_requested is False
                       and len(store.series(run_id, "loss").steps) > stopped_at, timeout=60)
        cli = subprocess.run([sys.executable, "-m", "tui.cli", "runs", "stop", str(run_id)],
                             capture_output=True, text=True, timeout=60, env=os.environ.copy())
        assert cli.returncode == 0, cli.stderr
        await wait_for(pilot, lambda: status() == "stopped", timeout=60)
        assert store.get_run(run_id).status == "stopped"
        endings = [e.message for e in store.events(run_id) if e.message.startswith("Run ")]
        assert len(endings) == 2 and all(m.startswith("Run stopped at step ") and
                                         "runs resume" in m for m in endings)


async def test_a_multi_node_runs_panel_shows_its_world(store):
    """A run its worker recorded as 2 nodes x 2 processes says so, with the node hosts."""
    run_id = store.create_run({"name": "wide"}, name="wide", model_id="m", task="text-classification",
                              dataset="d.csv")
    store.claim(run_id, store.get_run(run_id).lease, pid=os.getpid(), host="node-a",
                env={"world_size": 4, "nnodes": 2, "node_hosts": ["node-a", "node-b"]})
    store.finish(run_id, "completed", summary={}, error=None)
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        summary = app.screen.query_one("#detail-summary", Static)
        await wait_for(pilot, lambda: "wide" in str(summary.render()))
        assert "data parallel: 4 processes on 2 nodes (node-a, node-b)" in str(summary.render())
