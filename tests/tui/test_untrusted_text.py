"""Untrusted text never drives the terminal: markup in it is shown, never parsed, and
its control characters are shown as escapes, in every screen, dialog and toast.

What is checked is what the app would send to the terminal: the screen rendered
through its compositor, as `App.export_screenshot` does, read segment by segment.
A raw ESC, BEL, CSI or CR in any widget's output fails the check, as does a crash
(a `[/]` parsed as markup raises while rendering and the app exits).
"""

from __future__ import annotations

import functools
import os

from textual.widgets import DataTable, DirectoryTree, Input

from tests.support.pilot_wait import wait_for as _wait_for
from tui.app import make_app

wait_for = functools.partial(_wait_for, timeout=20.0)

NAME = "[bold red]x[/ [/] [link=http://x]y[/link] \x1b]0;pwned\x07 \x1b[2J\x9b31m\r\nrow2"
TAG = "[/]\x1b[2Jtag"
NOTES = "[@click=app.quit]note[/] \x1b]0;pwned\x07\nsecond line"
ERROR = "failed [/] \x1b[2Jboom \x9b31m \u202eevil"
EVENT = "[link=http://x]y[/link] \x1b]0;pwned\x07\r\n· Training finished"
BAD_KEY = "[/]\x1b[2Jkey"
"""An unknown config key: fork quotes it in its error toast, compare lists it."""

RAW = {"\x1b": "ESC", "\x07": "BEL", "\x9b": "CSI", "\r": "CR", "\x08": "BS",
       "\u202e": "bidi override"}


def screen_text(app) -> str:
    """Every character the current screen (with the screens under a modal and any
    toasts) would put on the terminal, one line per row; control segments (cursor
    moves) left out, as they are ours."""
    update = app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens)
    return "\n".join("".join(seg.text for strip in line for seg in strip if not seg.control)
                     for line in update.strips)


def assert_clean(app) -> str:
    """The app is alive and nothing raw reaches the terminal; returns the screen text."""
    assert app.is_running and app._exception is None, app._exception
    text = screen_text(app)
    found = [name for ch, name in RAW.items() if ch in text]
    assert not found, f"raw {found} on screen: {text!r}"
    return text


def force(store, run_id: int, **columns) -> None:
    """Write run columns as they are. The store now refuses control characters in names,
    tags and notes, but a database written before that (or by another tool) holds them,
    and the TUI must show whatever is there."""
    import json

    if "tags" in columns:
        columns["tags_json"] = json.dumps(columns.pop("tags"))
    sets = ", ".join(f"{k} = ?" for k in columns)
    store.db.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*columns.values(), run_id])
    store.db.conn.commit()


def toasts_text(app) -> str:
    """What the toasts on screen say, unwrapped (the screen text wraps them)."""
    # By the widget's type name: Textual does not export the Toast class.
    return "\n".join(str(toast.render()) for toast in app.screen.query("Toast"))


async def shows(pilot, app, *texts: str, toasts=()) -> None:
    """Wait until the screen shows every one of `texts` and the toasts every one of
    `toasts`; then check the app is alive and nothing raw is on the screen."""
    def missing() -> list[str]:
        screen, said = screen_text(app), toasts_text(app)
        return [t for t in texts if t not in screen] + [t for t in toasts if t not in said]

    try:
        await wait_for(pilot, lambda: not missing())
    except AssertionError:
        raise AssertionError(f"not shown: {missing()}\n{screen_text(app)}") from None
    assert_clean(app)


def seed(store) -> tuple[int, int, int]:
    """A failed run, a completed one and a running one, all named and noted with markup
    and escape sequences."""
    failed = store.create_run({"model": {"id": "m"}, BAD_KEY: 1}, name="a",
                              task="text-classification")
    store.add_event(failed, EVENT)
    store.add_event(failed, ERROR, level="error")
    store.log_metrics(failed, [(s, s / 10, "loss", 1.0 / s, 0.0) for s in range(1, 6)])
    store.finish(failed, "failed", error=ERROR)
    force(store, failed, name=NAME, model_id=NAME, dataset=NAME, tags=[TAG, "[b]ok"],
          notes=NOTES, error=ERROR)
    done = store.create_run({"model": {"id": "other"}}, name="b", task="text-classification")
    store.log_metrics(done, [(s, s / 10, "loss", 2.0 / s, 0.0) for s in range(1, 6)])
    store.finish(done, "completed", summary={"final_accuracy": 0.5,
                                             "watched_metric": "[/]m\x1b[2J"})
    force(store, done, name="[/]done\x1b[2J")
    running = store.create_run({"model": {"id": "m"}}, name="c")
    store.claim(running, store.get_run(running).lease, pid=os.getpid(), host="elsewhere",
                env={})
    force(store, running, name="\x1b]0;pwned\x07[/]live")
    return failed, done, running


async def test_runs_screen_dialogs_and_toasts_show_hostile_text_literally(store):
    failed, done, running = seed(store)
    app = make_app(store=store)
    async with app.run_test(size=(160, 50), notifications=True) as pilot:
        screen = app.screen
        table = screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        # A newline in a name makes no second row: each name is one line of its cell.
        names = [table.get_cell(str(i), "name").plain for i in (failed, done, running)]
        assert all("\n" not in n and "\r" not in n for n in names), names
        assert names[0].startswith("[bold red]x[/")
        await shows(pilot, app, "\\x1b]0;pwned", "[/]done\\x1b[2J")

        # The failed run's panel: name, tags, notes, error and events, all as written.
        table.move_cursor(row=table.get_row_index(str(failed)))
        await shows(pilot, app, "[bold red]x[/ [/] [link=http://x]y[/link] \\x1b]0;pwned\\x07",
                    "[/]\\x1b[2Jtag", "[@click=app.quit]note[/] \\x1b]0;pwned\\x07\\nsecond",
                    "failed [/] \\x1b[2Jboom \\x9b31m \\u202eevil",
                    "[link=http://x]y[/link] \\x1b]0;pwned\\x07\\r")
        # The event's second line is indented: it cannot pass for an event of its own.
        log = screen.query_one("#event-log")
        await wait_for(pilot, lambda: any("Training finished" in s.text for s in log.lines))
        log_lines = [strip.text for strip in log.lines]
        assert any(line.startswith("  · Training finished") for line in log_lines), log_lines
        assert not any(line.startswith("· Training") for line in log_lines), log_lines

        # Tags and notes dialogs: the Input holds escapes, and saving unchanged keeps
        # the stored text as it was.
        await pilot.press("t")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "EditScreen")
        await shows(pilot, app, "[/]\\x1b[2Jtag, [b]ok")
        assert "\x1b" not in app.screen.query_one(Input).value
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "EditScreen")
        await shows(pilot, app, "[@click=app.quit]note[/] \\x1b]0;pwned")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen)
        assert store.get_run(failed).notes == NOTES

        # Delete asks with the name quoted literally; the answer is no.
        await pilot.press("x")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await shows(pilot, app, "Delete run", "[bold red]x[/ [/] [link=http://x]y[/link]")
        await pilot.press("n")
        await wait_for(pilot, lambda: app.screen is screen)

        # Fork: the config's unknown key is quoted in an error toast.
        await pilot.press("f")
        await shows(pilot, app, toasts=["Unknown key [/]\\x1b[2Jkey"])

        # Stop the running run: its name in the question, then a toast.
        table.move_cursor(row=table.get_row_index(str(running)))
        await wait_for(pilot, lambda: screen.selected_id == running)
        await pilot.press("s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await shows(pilot, app, "Stop run", "\\x1b]0;pwned\\x07[/]live")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is screen)
        assert store.stop_requested(running)

        # Compare the failed and completed runs: names, the odd config key, the odd
        # metric name in the chart.
        for run_id in (failed, done):
            table.move_cursor(row=table.get_row_index(str(run_id)))
            await wait_for(pilot, lambda run_id=run_id: screen.selected_id == run_id)
            await pilot.press("space")
        await pilot.press("c")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "CompareScreen")
        await shows(pilot, app, "[/]\\x1b[2Jkey", "[/]done\\x1b[2J", "validation [/]m\\x1b[2J")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen)

        # A toast quoting markup and escapes, from a widget and from the engine thread.
        screen.notify("[bold]x[/ [/] \x1b]0;pwned\x07", severity="error")

        def fails():
            raise RuntimeError("[@click=app.quit]boom[/] \x1b[2J")

        app.engine.submit(fails)
        await shows(pilot, app, toasts=["[bold]x[/ [/] \\x1b]0;pwned\\x07",
                                        "RuntimeError: [@click=app.quit]boom[/] \\x1b[2J"])


async def test_data_preview_and_file_picker_show_hostile_files_literally(store, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    csv = data / "evil[b].csv"
    csv.write_text('"[/]\x1b[2Jhead",label\n'
                   '"[bold red]x[/ \x1b]0;pwned\x07 two\nlines",[/]neg\x1b[2J\n'
                   '"fine text",pos\n', encoding="utf-8")
    (data / "[b]\x1b]0;pwned\x07[.csv").write_text("text,label\nx,y\n")
    app = make_app(store=store)
    async with app.run_test(size=(160, 50), notifications=True) as pilot:
        await pilot.press("3")
        screen = app.screen
        screen.query_one("#f-train-file", Input).value = str(csv)
        await shows(pilot, app, "[/]\\x1b[2Jhead", "[bold red]x[/ \\x1b]0;pwned\\x07 two\\nlines",
                    "[/]neg\\x1b[2J 1", "evil[b].csv")
        # A newline in a cell makes no second row.
        assert screen.query_one("#preview-table", DataTable).row_count == 2

        # The picker lists the file whose name holds an escape sequence, as escapes.
        screen.query_one("#f-train-file", Input).value = str(data / "missing.csv")
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "FilePickerScreen")
        tree = app.screen.query_one(DirectoryTree)
        await wait_for(pilot, lambda: len(tree.root.children) == 2)
        await shows(pilot, app, "[b]\\x1b]0;pwned\\x07[.csv")
        await pilot.press("escape")


async def test_hub_fields_and_card_show_literally(hf_cache, tmp_path, monkeypatch, store):
    import huggingface_hub.constants as hf_constants

    from tests.support.hub_server import HubServer, Repo

    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "README.md").write_text(
        "---\nlicense: mit\n---\n# Card [bold red]x[/ \x1b]0;pwned\x07\n\n"
        "Body [@click=app.quit]q[/] \x1b[2J\x9b31m and [a link](http://x).\n",
        encoding="utf-8")
    (folder / "w[b]\x1b[2J.bin").write_bytes(b"\0" * 16)
    repos = [
        Repo("evil/detail", folder, pipeline_tag="[/]task\x1b]0;pwned\x07",
             library="[b]lib\x9b31m", downloads=1000,
             tags=["license:[link=http://x]y[/link]\x1b[2J"]),
        Repo("evil/x[/]\x1b[2J", folder, pipeline_tag="fill-mask", downloads=1),
    ]
    with HubServer(repos) as server:
        monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.url)
        monkeypatch.setattr(hf_constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            server.url + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        app = make_app(store=store, hub_endpoint=server.url)
        async with app.run_test(size=(160, 50), notifications=True) as pilot:
            await pilot.press("2")
            screen = app.screen
            table = screen.query_one("#hub-results", DataTable)
            await wait_for(pilot, lambda: table.row_count == 2)
            await shows(pilot, app, "evil/x[/]\\x1b[2J", "[/]task\\x1b]0;pwned\\x07",
                        "[b]lib\\x9b31m", "[link=http://x]y[/link]\\x1b[2J", "w[b]\\x1b[2J.bin",
                        "Card [bold red]x[/ \\x1b]0;pwned\\x07",
                        "Body [@click=app.quit]q[/] \\x1b[2J\\x9b31m")
            # The other model's id is not a valid repo id: loading it fails in a toast
            # that quotes it.
            await pilot.press("escape", "down")
            await shows(pilot, app, toasts=["evil/x[/]\\x1b[2J"])


NASTY = ["[/]", "[bold red]x[/", "[link=http://x]y[/link]", "[@click=app.quit]q[/]", "a\\",
         "\\", "x\\[b]y", "\\\\[i]", "$name $$", "\x1b[2J\x9b31m\r\n\u202e"]


def test_literal_and_styled_keep_any_text_out_of_markup():
    """Inside our own markup, any text shows as written (controls as escapes), and the
    tags around it still apply: even a trailing backslash does not escape them."""
    from textual.content import Content

    from tui.formatting import literal, styled
    from tui.safe_text import printable

    for text in NASTY:
        content = Content.from_markup(f"[i][b]{literal(text)}[/b] tail[/i]")
        assert content.plain.replace("\u200b", "") == printable(text) + " tail", text
        bold = [s for s in content.spans if "b" in str(s.style).split()]
        assert bold and bold[0].end >= len(printable(text)), (text, content.spans)
        assert styled("[b]$v[/b] tail", v=text).plain == printable(text) + " tail", text


def test_playground_predictions_are_shown_as_written():
    from types import SimpleNamespace

    from textual.content import Content

    from tui.screens.playground import describe

    hostile = "[bold red]x[/\x1b]0;pwned\x07[/]"
    p = SimpleNamespace(label=hostile, score=0.5, scores={hostile: 0.6, "[/]": 0.4})
    for shown_as in ("labels", "text", "answer", "tags"):  # as the adapters set it
        label = f"{hostile}/B-[/]" if shown_as == "tags" else hostile
        shown = Content.from_markup("\n".join(describe(
            SimpleNamespace(**{**vars(p), "label": label, "shown_as": shown_as})))).plain
        assert "\x1b" not in shown and "\x07" not in shown, (shown_as, shown)
        assert "[bold red]x[/\\x1b]0;pwned\\x07[/]" in shown, (shown_as, shown)
