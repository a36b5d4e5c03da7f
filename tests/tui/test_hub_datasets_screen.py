"""Hub datasets on the hub screen, the local screen and the new-run form, driven by keys
against the loopback hub (an open dataset with the subsets reviews and short, a gated
one, one without a README)."""

from __future__ import annotations

import functools

import pytest
from textual.widgets import DataTable, Input, Markdown, Select, Static

from tests.support.pilot_wait import field, settle
from tests.support.pilot_wait import wait_for as _wait_for
from tui.app import make_app

pytestmark = pytest.mark.slow  # whole TUI sessions, as tests/tui/test_hub_screen.py
wait_for = functools.partial(_wait_for, timeout=20.0)
SENTIMENT = "hubtune-test/sentiment"


def text(widget) -> str:
    return str(widget.render())


def toasts(app) -> list[str]:
    return [n.message for n in app._notifications]


async def test_switch_search_details_download_and_use_in_a_new_run(hub_server, store,
                                                                   hf_cache, tiny_bert):
    from engine.hub.client import list_cached

    app = make_app(store=store, hub_endpoint=hub_server.url)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("2")
        screen = app.screen
        table = screen.query_one("#hub-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 7)
        screen.query_one("#hub-task", Select).value = "fill-mask"  # a models filter
        await wait_for(pilot, lambda: [k.value for k in table.rows] == ["hubtune-test/tiny-bert"])
        await pilot.press("escape", "t")  # out of the box; t switches to datasets
        await wait_for(pilot, lambda: table.row_count == 3)
        assert [c.label.plain for c in table.columns.values()][1:4] == ["Dataset", "Task", "Rows"]
        assert not isinstance(screen.query_one("#hub-task", Select).value, str)  # its own filter
        assert not screen.query_one("#hub-size").has_class("-hidden")
        assert screen.query_one("#hub-library").has_class("-hidden")
        screen.query_one("#hub-size", Select).value = "n<1K"
        await wait_for(pilot, lambda: [k.value for k in table.rows] == [
            SENTIMENT, "hubtune-test/gated-data"])
        assert table.get_cell(SENTIMENT, "size").plain == "n<1K"
        # The first row is highlighted: its details, subsets and card.
        summary = screen.query_one("#dataset-summary", Static)
        await wait_for(pilot, lambda: "license mit" in text(summary))
        assert f"hf:{SENTIMENT}" in text(summary) and "n<1K rows" in text(summary)
        subset = screen.query_one("#dataset-subset", Select)
        assert subset.value == "reviews" and not subset.has_class("-hidden")
        info = screen.query_one("#dataset-subset-info", Static)
        assert "96 rows" in text(info) and "label class_label(neg, pos)" in text(info)
        assert "Reviews labelled neg/pos" in screen.query_one("#dataset-card", Markdown).source
        subset.value = "short"
        await wait_for(pilot, lambda: "40 rows" in text(info))
        assert "score float32" in text(info)
        # Filters persist across screens, per kind.
        await pilot.press("1")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.query_one("#hub-size", Select).value == "n<1K"
        await wait_for(pilot, lambda: table.row_count == 2)
        await pilot.press("t")
        await wait_for(pilot, lambda: [k.value for k in table.rows] == ["hubtune-test/tiny-bert"])
        assert screen.query_one("#hub-task", Select).value == "fill-mask"
        await pilot.press("t")
        await wait_for(pilot, lambda: table.row_count == 2)
        await wait_for(pilot, lambda: "license mit" in text(summary))  # loaded again
        assert subset.value == "short"  # the subset picked before is kept
        # d downloads the picked subset's files with progress; the row marks it cached.
        table.focus()
        await pilot.press("d")
        await wait_for(pilot, lambda: table.get_cell(SENTIMENT, "cached") == "✓")
        assert [m.id for m in list_cached("dataset") if m.has_weights] == [SENTIMENT]
        fetched = [p for m, p in hub_server.requests if m == "GET" and ".parquet" in p]
        assert fetched and all("/short/" in p for p in fetched)
        # u opens the new-run form with the dataset and its subset as the training data.
        await pilot.press("u")
        # The form is shown before the action that opened it fills it in: wait for that.
        await wait_for(pilot, lambda: field(app, "#f-train-file") == f"hf:{SENTIMENT}")
        form = app.screen
        # data.subset is in the Advanced section, held until its fields are built.
        from tui.widgets.advanced_settings import AdvancedSettings

        assert form.query_one(AdvancedSettings).values()["data.subset"] == "short"
        # The form previews it from the cache's first file: the short subset's columns.
        preview = form.query_one("#preview-summary", Static)
        await wait_for(pilot, lambda: "split train" in text(preview))
        assert f"hf:{SENTIMENT} (subset short, split train): 40 rows, 2 columns" in \
            text(preview)
        assert "sentence string" in text(preview)
        table = form.query_one("#preview-table", DataTable)
        assert [c.label.plain for c in table.columns.values()] == ["sentence", "score"]
        # The pane shows the preview first; the screen offers its columns when the same
        # message reaches it, a moment later on a loaded machine.
        text_col = form.query_one("#f-text-col", Select)
        await wait_for(pilot, lambda: text_col.value == "sentence",
                       what=f"text column 'sentence' (it is {text_col.value!r})")
        # Token lengths are counted in the split's first file with the model's tokenizer.
        form.query_one("#f-model", Input).value = str(tiny_bert)
        lengths = form.query_one("#length-stats", Static)
        await wait_for(pilot, lambda: "suggested max" in text(lengths))


async def test_gated_details_and_an_unknown_split_say_one_sentence(hub_server, store,
                                                                   hf_cache):
    app = make_app(store=store, hub_endpoint=hub_server.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2", "escape", "t")  # t in the search box would be typed
        screen = app.screen
        table = screen.query_one("#hub-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        table.focus()
        await pilot.press("down")  # the gated one
        await wait_for(pilot, lambda: any("is gated or private (HTTP 401): request access at"
                                          in m for m in toasts(app)))
        await app.new_run()
        form = app.screen
        form.query_one("#f-train-file", Input).value = f"hf:{SENTIMENT}:test"
        error = form.query_one("#e-train-file", Static)
        await wait_for(pilot, lambda: "has no split 'test'" in text(error))
        assert "its splits are train, validation" in text(error)


async def test_local_screen_lists_a_cached_dataset_uses_and_deletes_it(hub_server, store,
                                                                       hf_cache):
    from engine.data.hub.fetch import download_dataset
    from engine.hub.client import list_cached

    download_dataset(SENTIMENT, subset="short")
    app = make_app(store=store, hub_endpoint=hub_server.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        screen = app.screen
        table = screen.query_one("#models-table", DataTable)
        key = f"hf:{SENTIMENT}"
        await wait_for(pilot, lambda: table.row_count == 2)  # and the packaged MiniLM
        assert table.get_cell(key, "type") == "dataset"
        assert table.get_cell(key, "weights") == "data"
        assert table.get_cell(key, "size").endswith("kB")
        summary = screen.query_one("#models-summary", Static)
        assert text(summary).startswith("1 model, 1 dataset, ")
        table.move_cursor(row=table.get_row_index(key))
        await pilot.press("u")
        await wait_for(pilot, lambda: field(app, "#f-train-file") == key)  # shown, then filled
        await settle(pilot)  # the form's preview and plan read the data: done before rm
        await app.switch_mode("models")
        await wait_for(pilot, lambda: app.screen is screen)
        await pilot.press("x")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert list_cached("dataset") == []
        assert any(f"Deleted {key}" in m for m in toasts(app))


async def test_hostile_dataset_fields_and_card_show_literally(hf_cache, tmp_path, monkeypatch,
                                                             store):
    import huggingface_hub.constants as hf_constants

    from tests.support.hub_server import HubServer, Repo
    from tests.tui.test_untrusted_text import shows

    folder = tmp_path / "evil"
    (folder / "x[b]\x1b[2J").mkdir(parents=True)
    (folder / "README.md").write_text(
        "---\nlicense: \"[link=http://x]y[/link]\\e[2J\"\ntask_categories: [\"[/]t\\e]0;pwned\\a\"]\n"
        "---\n# Card [bold red]x[/ \x1b]0;pwned\x07\n\nBody [@click=app.quit]q[/] \x1b[2J\n",
        encoding="utf-8")
    (folder / "x[b]\x1b[2J" / "train.csv").write_text("te[/]xt,label\na,b\n")
    (folder / "other").mkdir()
    (folder / "other" / "train.csv").write_text("text,label\na,b\n")
    with HubServer([Repo("evil/data", folder, repo_type="dataset", downloads=3)]) as server:
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.url)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        app = make_app(store=store, hub_endpoint=server.url)
        async with app.run_test(size=(160, 50), notifications=True) as pilot:
            await pilot.press("2", "escape", "t")
            await shows(pilot, app, "[/]t\\x1b]0;pwned\\x07", "[link=http://x]y[/link]\\x1b[2J",
                        "Card [bold red]x[/ \\x1b]0;pwned\\x07",
                        "Body [@click=app.quit]q[/] \\x1b[2J", "subsets: other, x[b]\\x1b[2J")
