"""The export dialog (E on the runs screen, tui/screens/export.py): a completed run goes
to a folder, as ONNX and to the loopback hub from the TUI's background path, with its
steps in the status line; a failure is one sentence there; an unfinished run is refused."""

from __future__ import annotations

import pytest
from textual.widgets import Checkbox, Input, Static

from tests.support.hub_upload import WRITE_TOKEN
from tests.support.pilot_wait import select_run, wait_for
from tests.support.tests_helpers import config_for, train_in_process
from tui.app import make_app
from tui.screens.export import ExportChoice, ExportScreen, choice_problem

pytestmark = pytest.mark.slow  # trains a tiny run; the ONNX exporter takes seconds


@pytest.fixture
def run_id(store, tmp_path, tiny_bert, sentiment_csv):
    return train_in_process(config_for(tmp_path, tiny_bert, sentiment_csv, max_steps=2))


def _status(app) -> str:
    return str(app.screen.query_one("#export-status", Static).render())


async def _open_dialog(pilot, run_id: int) -> ExportScreen:
    await select_run(pilot, run_id)
    await pilot.press("E")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ExportScreen))
    return pilot.app.screen


async def test_a_run_goes_to_a_folder_as_onnx_and_to_the_hub(store, run_id, tmp_path,
                                                             hub_server, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the LFS protocol
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    target = tmp_path / "from-the-tui"
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        dialog = await _open_dialog(pilot, run_id)
        dialog.query_one("#export-folder", Input).value = str(target)
        dialog.query_one("#export-onnx", Checkbox).value = True
        dialog.query_one("#export-repo", Input).value = "alice/from-tui"
        await pilot.click("#export-go")
        await wait_for(pilot, lambda: _status(app).endswith("Done."), timeout=180,
                       what="the export to finish")
        assert "Pushed to" in _status(app) and "alice/from-tui" in _status(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ExportScreen))
    assert (target / "model.onnx").is_file() and (target / "model.safetensors").is_file()
    assert "## ONNX" in (target / "README.md").read_text()
    assert hub_server.uploads.commits == ["alice/from-tui"]


async def test_a_failure_is_one_sentence_and_an_unfinished_run_is_refused(store, run_id,
                                                                          tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    queued = store.create_run({"a": 1}, name="not-done")
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        dialog = await _open_dialog(pilot, run_id)
        dialog.query_one("#export-folder", Input).value = str(busy)
        await pilot.click("#export-go")
        await wait_for(pilot, lambda: "is not empty" in _status(app), timeout=60)
        assert "\n" not in _status(app).strip()
        assert not dialog.query_one("#export-go").disabled  # the user can try again
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ExportScreen))
        await select_run(pilot, queued)
        await pilot.press("E")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ExportScreen)
    assert (busy / "keep.txt").read_text() == "mine" and len(list(busy.iterdir())) == 1


def test_choices_that_cannot_work_are_refused_before_anything_runs(tmp_path):
    assert choice_problem(ExportChoice(tmp_path / "a")) is None
    assert "tick ONNX" in choice_problem(ExportChoice(tmp_path / "a", quantize=True))
    assert "OWNER/NAME" in choice_problem(ExportChoice(tmp_path / "a", repo="just-a-name"))
