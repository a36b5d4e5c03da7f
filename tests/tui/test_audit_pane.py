"""The new-run form's data audit (tui/widgets/audit_pane.py) through Pilot: audit the
form's data (its button, or F4 from any field), see the suspects with their text
escaped, drop one and relabel another by hand, write the cleaned copy and have the form
train on it; and Stop."""

from __future__ import annotations

import csv
import functools
import json
import random
import threading

import pytest
from textual.widgets import Button, DataTable, Input, Static

from tests.support import needs_cleanlab
from tests.support.pilot_wait import settle
from tests.support.pilot_wait import wait_for as _wait_for
from tests.support.tiny_models import write_sentiment_csv
from tests.tui.test_new_run_screen import type_into
from tui.app import make_app

pytestmark = [pytest.mark.slow, needs_cleanlab]

wait_for = functools.partial(_wait_for, timeout=60.0)


@pytest.fixture
def noisy_csv(tmp_path):
    """The tiny sentiment set with eight labels flipped and an escape sequence in a text."""
    source = write_sentiment_csv(tmp_path / "source.csv", 120, seed=3)
    with open(source, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in random.Random(1).sample(range(len(rows)), 8):
        rows[row]["label"] = "negative" if rows[row]["label"] == "positive" else "positive"
        rows[row]["text"] += " \x1b[31mred"
    path = tmp_path / "noisy.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows(rows)
    return path


async def fill(pilot, model, data) -> None:
    await pilot.press("3")
    await type_into(pilot, "f-model", str(model))
    await type_into(pilot, "f-train-file", str(data))
    await type_into(pilot, "f-max-length", "32")
    launch = pilot.app.screen.query_one("#launch", Button)
    await wait_for(pilot, lambda: not launch.disabled, what="a valid form")
    # The token counts and label counts the valid form asked for, done: what they show
    # moves the audit pane down, and a click aimed at its button before then misses.
    await settle(pilot)


async def test_audit_fix_by_hand_and_train_on_the_cleaned_copy(store, tiny_bert, noisy_csv):
    app = make_app(store=store)
    async with app.run_test(size=(160, 60)) as pilot:
        await fill(pilot, tiny_bert, noisy_csv)
        screen = app.screen
        await pilot.click("#audit-start")
        table = screen.query_one("#audit-table", DataTable)
        await wait_for(pilot, lambda: table.row_count > 2, what="the suspects")
        summary = str(screen.query_one("#audit-summary", Static).render())
        assert "likely label errors" in summary
        texts = [str(table.get_row_at(i)[5]) for i in range(table.row_count)]
        assert all("\x1b" not in t for t in texts)  # the escape is shown, never sent
        first, second = (table.get_row_at(i) for i in (0, 1))
        table.focus()
        await pilot.press("d", "r")  # drop the first, relabel the second to its suggestion
        assert str(table.get_row_at(0)[4]) == "drop"
        assert str(table.get_row_at(1)[4]) == f"→ {second[2]}"

        await pilot.click("#audit-clean")
        train_box = screen.query_one("#f-train-file", Input)
        await wait_for(pilot, lambda: train_box.value != str(noisy_csv), what="the copy")
        with open(train_box.value, newline="", encoding="utf-8-sig") as fh:
            kept = list(csv.DictReader(fh))
        record = json.loads(open(train_box.value + ".audit.json", encoding="utf-8").read())
        assert record["mode"] == "by hand" and record["relabelled"] == 1
        assert len(kept) == 120 - record["dropped"] and record["dropped"] >= 1
        with open(noisy_csv, newline="", encoding="utf-8") as fh:
            original = list(csv.DictReader(fh))
        dropped_text = original[int(str(first[0]))]["text"]
        assert dropped_text not in {r["text"] for r in kept}
        relabelled = original[int(str(second[0]))]["text"]
        assert [r["label"] for r in kept if r["text"] == relabelled][0] == str(second[2])
        launch = screen.query_one("#launch", Button)
        await wait_for(pilot, lambda: not launch.disabled, what="the copy previewed")


async def test_f4_audits_the_form_from_a_text_field(store, tiny_bert, noisy_csv):
    app = make_app(store=store)
    async with app.run_test(size=(100, 40), notifications=True) as pilot:
        await pilot.press("3")
        screen = app.screen
        summary = screen.query_one("#audit-summary", Static)
        await pilot.press("f4")  # an empty form: one sentence, no audit
        assert not screen.query_one("#audit-pane").running
        assert any("before auditing" in n.message for n in app._notifications)
        await fill(pilot, tiny_bert, noisy_csv)
        assert isinstance(screen.focused, Input)  # a text box takes no F-key
        await pilot.press("f4")
        await wait_for(pilot, lambda: "likely label errors," in str(summary.render()),
                       what="the audit's findings")
        assert screen.query_one("#audit-table", DataTable).row_count > 0
        assert not screen.query_one("#audit-start", Button).disabled


async def test_stop_ends_an_audit_with_one_sentence(store, tiny_bert, noisy_csv):
    app = make_app(store=store)
    async with app.run_test(size=(160, 60)) as pilot:
        await fill(pilot, tiny_bert, noisy_csv)
        screen = app.screen
        pane = screen.query_one("#audit-pane")
        # The engine thread is held until Stop is pressed, so the audit cannot finish on
        # a tiny file before the stop reaches it.
        hold = threading.Event()
        app.engine.submit(hold.wait)
        await pilot.click("#audit-start")
        assert pane.running
        pane.stop()
        hold.set()
        summary = screen.query_one("#audit-summary", Static)
        await wait_for(pilot, lambda: not pane.running, what="the audit to end")
        assert "stopped before it finished" in str(summary.render())
        assert not screen.query_one("#audit-start", Button).disabled


async def test_a_runs_wrong_example_marked_mislabelled_feeds_the_cleaned_copy(store,
                                                                             tmp_path):
    """m in a completed run's errors view marks the row; the next cleaned copy (here the
    engine's, as `data audit --write-clean` and the form's audit write it) relabels it."""
    from engine.audit.clean import write_clean
    from engine.audit.marks import load_marks
    from engine.audit.run import AuditReport
    from engine.core.config import RunConfig
    from engine.trained.review import validation_inputs

    data = write_sentiment_csv(tmp_path / "tweets.csv", rows=40)
    cfg = RunConfig.from_dict({"name": "base", "model": {"id": "org/tiny"},
                               "data": {"train": str(data), "validation_split": 0.25}})
    run = store.create_run(cfg.to_dict(), name="base", task="text-classification",
                           model_id="org/tiny")
    inputs = validation_inputs(cfg)
    other = {"positive": "negative", "negative": "positive"}
    rows = [(i, other[x.label] if i == 0 else x.label, x.label, 0.9, 2.0 if i == 0 else 0.1)
            for i, x in enumerate(inputs)]  # (example, predicted, label, confidence, loss)
    store.replace_predictions(run, 20, len(inputs), "cross_entropy", rows)
    store.finish(run, "completed", summary={"final_accuracy": 0.9})
    wrong_row, wrong_label = inputs[0].row, inputs[0].label

    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: "base" in str(screen.query_one("#detail-summary").render()))
        await pilot.press("e")
        marks = screen.query_one("#error-marks")
        await wait_for(pilot, lambda: marks.option_count == 1, what="the wrong example")
        marks.focus()
        marks.highlighted = 0
        await pilot.press("m")
        assert load_marks(cfg) == {wrong_row: other[wrong_label]}
        assert "✎" in str(marks.get_option_at_index(0).prompt)

    cleaned = write_clean(cfg, AuditReport(), tmp_path / "clean.csv", choices=load_marks(cfg))
    with open(cleaned.path, newline="", encoding="utf-8-sig") as fh:
        kept = list(csv.DictReader(fh))
    assert cleaned.relabelled == 1 and kept[wrong_row]["label"] == other[wrong_label]
