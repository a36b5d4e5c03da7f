"""A remote run on the runs screen beyond stop and resume (#37): marked with a run of this
machine and compared (its record and curves read over SSH), its event log and its
errors view read through the protocol, and f forking it into the new-run form set to
run on that remote, where the fork is recorded as its child. The remote is this machine over a real sshd on loopback
(tests/support/sshd.py) with a HUBTUNE_HOME of its own, one completed run there made
once for the module."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Button, DataTable, Select, Static

from store import RunStore
from store.remotes import Remote, add_remote
from tests.support.pilot_wait import select_run, wait_for
from tests.support.tests_helpers import config_for
from tui.app import make_app
from tui.widgets.chart import LineChart

pytestmark = pytest.mark.slow  # a whole TUI session reading a remote over ssh

HUBTUNE = str(Path(sys.executable).parent / "hubtune")
EVENT = "[b]Evaluated[/b] $(id) at step 5"
"""An event of the remote run: markup and shell text, shown as written."""


@pytest.fixture(scope="module")
def far_home(tmp_path_factory, tiny_bert, sentiment_csv):
    """box's HUBTUNE_HOME with one completed run: its loss curve, an evaluation, an
    event and per-example results of 40 validation examples (example 0 wrong)."""
    home = tmp_path_factory.mktemp("remote-home")
    cfg = config_for(home, tiny_bert, sentiment_csv, max_steps=5)
    there = RunStore(home / "hubtune.db")
    run_id = there.create_run({**cfg.to_dict(), "name": "far-run"}, name="far-run",
                              model_id=cfg.model.id, task=cfg.head.task, dataset="sentiment")
    there.log_metrics(run_id, [(s, s / 50, "loss", 1.0 / s, time.time()) for s in range(1, 6)])
    there.log_metrics(run_id, [(5, 0.1, "val_accuracy", 0.75, time.time())])
    there.add_event(run_id, EVENT)
    there.finish(run_id, "completed", summary={"watched_metric": "accuracy",
                                               "final_val_accuracy": 0.75})
    from engine.trained.review import validation_inputs

    labels = [x.label for x in validation_inputs(cfg)]  # as box reads them again
    assert len(labels) == 40
    flip = {"positive": "negative", "negative": "positive"}
    rows = [(i, flip[label] if i == 0 else label, label, 0.9, 3.0 if i == 0 else 0.1)
            for i, label in enumerate(labels)]
    there.replace_predictions(run_id, 5, 40, "cross_entropy", rows)
    there.close()
    return home, run_id


@pytest.fixture
def box(sshd, far_home, monkeypatch, store):
    monkeypatch.setenv("HUBTUNE_SSH_COMMAND", sshd.ssh_command)
    home, run_id = far_home
    add_remote(store, Remote("box", "127.0.0.1", sshd.user, sshd.port, HUBTUNE, str(home)))
    return run_id, home


async def test_a_remote_run_is_compared_forked_and_shows_its_events_and_errors(box, store):
    from tui.widgets.run_on import RunOn

    far, home = box
    near = store.create_run({"model": {"id": "l"}, "train": {"learning_rate": 0.5}},
                            name="near-run", model_id="l", task="text-classification",
                            dataset="d")
    store.log_metrics(near, [(s, s / 50, "loss", 2.0 / s, time.time()) for s in (1, 2)])
    key = f"box:{far}"
    app = make_app(store=store)
    async with app.run_test(size=(150, 44), notifications=True) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.holds(key) and table.holds(near), timeout=30,
                       what="the remote's run listed")
        runs = app.screen

        # space marks a run of each machine; c compares them.
        await select_run(pilot, near)
        await pilot.press("space")
        table.move_to(key)
        await wait_for(pilot, lambda: runs.remotes.selected_key == key, timeout=30)
        await pilot.press("space")
        assert runs.marked == {near, key} and "2 marked" in runs.sub_title
        assert str(table.get_cell(key, "id")).startswith("● ")
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CompareScreen",
                       timeout=30, what="the compare screen")
        compare = app.screen
        columns = [c.value for c in compare.query_one("#compare-table", DataTable).columns]
        assert columns == ["key", str(near), key]
        loss = {s.label: list(s.steps) for s in compare.query_one("#compare-loss",
                                                                  LineChart).series}
        assert loss == {f"#{near} near-run": [1, 2], f"box:{far} far-run": [1, 2, 3, 4, 5]}
        val = compare.query_one("#compare-val", LineChart).series
        assert [list(s.steps) for s in val] == [[], [5]]
        title = str(compare.query_one("#compare-title", Static).render())
        assert "config keys differ" in title
        await pilot.press("e")  # examples: two runs of one machine only, and it says so
        examples = compare.query_one("#examples-summary", Static)
        await wait_for(pilot, lambda: "two runs of one machine" in str(examples.render()))
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is runs)

        # Its panel lists box's events, escaped; e reads its worst examples there.
        log = runs.query_one("#event-log")
        await wait_for(pilot, lambda: any(EVENT in t.plain for t in log.entries),
                       timeout=30, what="box's event in the panel's log")
        await pilot.press("e")
        errors = runs.query_one("#errors-text", Static)
        await wait_for(pilot, lambda: "worst 30" in str(errors.render()), timeout=60,
                       what="box's worst examples")
        shown = str(errors.render())
        assert "of 40 validation examples (1 wrong), model of step 5" in shown
        assert "✗" in shown and "conf 0.90  loss 3.000" in shown
        await pilot.press("e")

        # f: the new-run form with its config, to run on box.
        await pilot.press("f")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "NewRunScreen",
                       timeout=30)
        form = app.screen
        choice = form.query_one("#f-run-on", Select)
        await wait_for(pilot, lambda: choice.value == "box", timeout=30,
                       what="the run-on choice set to box")
        assert form.query_one(RunOn).display
        assert form.sub_title == f"fork of run box:{far}"
        assert form.query_one("#f-name").value == "far-run-fork"

        # Queued from the form, it is recorded on box as a fork of the run it came from.
        there = RunStore(home / "hubtune.db")
        there.set_queue_paused(True)  # recorded there, never trained
        queue = form.query_one("#queue", Button)
        await wait_for(pilot, lambda: not queue.disabled, timeout=30, what="a valid form")
        queue.scroll_visible(animate=False)
        await pilot.pause()
        await pilot.click("#queue")
        await wait_for(pilot, lambda: there.count_runs() == 2, timeout=30,
                       what="the fork recorded on box")
        fork = next(r for r in there.list_runs() if r.id != far)
        assert (fork.name, fork.parent_id, fork.waiting) == ("far-run-fork", far, True)
        assert store.count_runs() == 1  # nothing started on this machine
        there.close()
