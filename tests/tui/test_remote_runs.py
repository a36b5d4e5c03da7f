"""The runs screen with a remote (#37): its runs listed beside this machine's with a Host
column, the `host:NAME` filter, a remote run's panel, stop reaching that remote's store,
and an unreachable remote as one line in the title while local runs still list.

The remote is this machine over a real sshd on loopback (tests/support/sshd.py) with a
HUBTUNE_HOME of its own, as in tests/test_cli_remote.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from store import RunStore
from store.remotes import Remote, add_remote
from tests.support.pilot_wait import select_run, settle, wait_for
from tests.support.sshd import free_port
from tui.app import make_app

pytestmark = pytest.mark.slow  # whole TUI sessions, each polling a remote over ssh

HUBTUNE = str(Path(sys.executable).parent / "hubtune")
HOSTILE = "far [b]run[/b] $(id) `id`"
"""A remote run's name: markup and shell text, shown as written."""


@pytest.fixture
def box(sshd, tmp_path, monkeypatch, store):
    """Remote `box`: this machine over ssh, with its own HUBTUNE_HOME (returned)."""
    monkeypatch.setenv("HUBTUNE_SSH_COMMAND", sshd.ssh_command)
    home = tmp_path / "remote-home"
    add_remote(store, Remote("box", "127.0.0.1", sshd.user, sshd.port, HUBTUNE, str(home)))
    return home


def _remote_run(home: Path) -> int:
    """A run waiting in box's paused queue (it never starts, so it can be stopped)."""
    there = RunStore(home / "hubtune.db")
    there.set_queue_paused(True)
    run_id = there.create_run({"model": {"id": "m"}}, name=HOSTILE, model_id="far/model",
                              task="text-classification", dataset="d", queue_slots=1)
    there.close()
    return run_id


async def test_a_remote_run_is_listed_with_its_host_filtered_shown_and_stopped(box, store):
    far = _remote_run(box)
    near = store.create_run({"model": {"id": "l"}}, name="near-run", model_id="l",
                            task="text-classification", dataset="d")
    key = f"box:{far}"
    app = make_app(store=store)

    def toasts() -> list[str]:
        return [n.message for n in app._notifications]
    async with app.run_test(size=(140, 40), notifications=True) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.holds(key) and table.holds(near), timeout=30,
                       what="the remote's run listed beside the local one")
        assert str(table.get_cell(key, "host")) == "box"
        assert str(table.get_cell(str(near), "host")) == "local"
        assert str(table.get_cell(key, "name")).startswith("far [b]run[/b]")

        # host:NAME in the search keeps one host's runs; host:local this machine's.
        await pilot.press("slash")
        search = app.screen.query_one("#run-search", Input)
        search.value = "host:box"
        await wait_for(pilot, lambda: [k.value for k in table.rows] == [key], timeout=30,
                       what="only box's run")
        search.value = "host:local"
        await wait_for(pilot, lambda: [k.value for k in table.rows] == [str(near)],
                       timeout=30, what="only this machine's run")
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.holds(key) and table.holds(near), timeout=30,
                       what="every host's runs again")

        # Its panel: the record `runs show --json` gave, named as on box.
        await select_run(pilot, near)  # the cursor starts here; then onto the remote run
        table.move_to(key)
        summary = app.screen.query_one("#detail-summary", Static)
        await wait_for(pilot, lambda: app.screen.remotes.selected_key == key
                       and "on remote box" in str(summary.render()), timeout=30,
                       what="the remote run in the panel")
        assert app.screen.selected_id is None
        assert "far [b]run[/b]" in str(summary.render()) and "queued" in str(summary.render())
        # e: not this machine's run of the same id, but box's answer (it has no
        # evaluated examples yet), read over the protocol.
        await pilot.press("e")
        errors = app.screen.query_one("#errors-text", Static)
        await wait_for(pilot, lambda: "On box: data.train is empty" in str(errors.render()),
                       timeout=30, what="box's errors answer")
        await pilot.press("e")

        # s asks, then stops it on box: its own store says so.
        await pilot.press("s")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmScreen")
        await pilot.press("y")
        await wait_for(pilot, lambda: RunStore(box / "hubtune.db").get_run(far).status
                       == "stopped", timeout=30, what="the remote run stopped on box")
        assert store.get_run(near).status != "stopped"  # the local run of the same screen
        await wait_for(pilot, lambda: "stopped" in str(table.get_cell(key, "status")),
                       timeout=30, what="the list showing it stopped")
        await wait_for(pilot, lambda: f"On box: Removed run {far} from the queue." in toasts(),
                       what="box's answer to stop")

        # R goes to box too: a run stopped before it started has nothing to resume from,
        # and box's one sentence is the toast.
        await pilot.press("R")
        await wait_for(pilot, lambda: f"On box: Run {far} has no checkpoint to resume from; "
                       f"fork it (hubtune runs fork {far}) to start again." in toasts(),
                       timeout=30, what="box's answer to resume")

        # Back on this machine's run, the panel is its own again.
        await select_run(pilot, near)
        await wait_for(pilot, lambda: "on remote box" not in str(summary.render()),
                       what="this machine's run in the panel again")
        assert "near-run" in str(summary.render())


async def test_an_unreachable_remote_is_one_line_in_the_title_and_local_runs_list(
        box, store):
    add_remote(store, Remote("dead", "127.0.0.1", None, free_port(), HUBTUNE, None))
    far = _remote_run(box)
    near = store.create_run({"model": {"id": "l"}}, name="near-run", model_id="l",
                            task="text-classification", dataset="d")
    app = make_app(store=store)
    async with app.run_test(size=(160, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: "Remote dead cannot be reached" in app.screen.sub_title,
                       timeout=30, what="the dead remote named in the title")
        title = app.screen.sub_title
        assert "Connection refused" in title and "\n" not in title
        assert title.count("cannot be reached") == 1  # box answers: it is not named
        await wait_for(pilot, lambda: table.holds(near) and table.holds(f"box:{far}"),
                       timeout=30, what="this machine's and box's runs still listed")
        await settle(pilot)


async def test_without_remotes_the_table_has_no_host_column(store):
    near = store.create_run({"model": {"id": "l"}}, name="near-run", model_id="l",
                            task="text-classification", dataset="d")
    app = make_app(store=store)
    async with app.run_test(size=(140, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.holds(near))
        await settle(pilot)
        assert "host" not in table.layout_shown.columns
        assert "cannot be reached" not in app.screen.sub_title
