"""Remotes in the TUI with a fake ssh (#37): the runs screen's heartbeat, where a remote
whose connection stays open but stops answering is taken for hung within a look and a
ping's timeout, named in the subtitle (the unreachable path), not after a read's 30 s
timeout; and the new-run form's "run on" choice offering a remote added while the app
is open. The fake speaks the protocol until a flag file appears, then reads on and
answers nothing."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable

from engine.remote.session import PROTOCOL
from store.remotes import Remote, add_remote
from tests.support.pilot_wait import settle, wait_for
from tui.app import make_app

pytestmark = pytest.mark.slow  # a whole TUI session

FAKE = f"""
import json, os, sys
flag = sys.argv[1]
print(json.dumps({{"hubtune": "0.1.0", "protocol": {PROTOCOL}}}), flush=True)
for line in sys.stdin:
    if os.path.exists(flag):
        continue  # hung: the connection stays open, nothing is answered
    ask = json.loads(line)
    if ask.get("ping"):
        print(json.dumps({{"id": ask["id"], "pong": True}}), flush=True)
    else:
        print(json.dumps({{"id": ask["id"], "exit": 0, "stdout": "[]", "error": None}}),
              flush=True)
"""


def _fake_ssh(tmp_path, monkeypatch) -> Path:
    """Use the fake as ssh; returns the flag file that makes it hang."""
    fake, flag = tmp_path / "fake_ssh.py", tmp_path / "hang"
    fake.write_text(FAKE)
    monkeypatch.setenv("HUBTUNE_SSH_COMMAND", f"{sys.executable} {fake} {flag}")
    return flag


async def test_a_remote_that_stops_answering_is_caught_by_the_heartbeat(
        tmp_path, monkeypatch, store):
    from tui import remote_records, remote_runs

    monkeypatch.setattr(remote_runs, "PING_TIMEOUT_S", 1.0)
    assert remote_records.READ_TIMEOUT_S >= 30  # what a hang would take without it
    flag = _fake_ssh(tmp_path, monkeypatch)
    add_remote(store, Remote("stuck", "127.0.0.1", None, None, "hubtune", None))
    near = store.create_run({"model": {"id": "l"}}, name="near-run", model_id="l",
                            task="text-classification", dataset="d")
    app = make_app(store=store)
    async with app.run_test(size=(160, 40)) as pilot:
        table = app.screen.query_one(DataTable)
        host = await _connected(pilot, app)
        assert host.down is None and table.holds(near)
        flag.touch()
        began = time.monotonic()
        await wait_for(pilot, lambda: "Remote stuck did not answer within 1 s"
                       in app.screen.sub_title, timeout=25, what="the hang named")
        took = time.monotonic() - began
        assert took < remote_runs.POLL_EVERY_S + 1.0 + 5.0, took  # a look, a ping, slack
        assert table.holds(near)  # this machine's runs go on


async def _connected(pilot, app):
    """The remote's host once its poll thread has listed it over a live session."""
    remotes = app.screen.remotes
    await wait_for(pilot, lambda: "stuck" in remotes.hosts
                   and remotes.hosts["stuck"].session is not None
                   and remotes.hosts["stuck"].listed_at > 0, timeout=20,
                   what="the fake remote connected")
    await asyncio.sleep(0)
    return remotes.hosts["stuck"]


async def test_the_run_on_choice_offers_a_remote_added_while_the_app_is_open(
        tmp_path, monkeypatch, store):
    from tui.widgets.run_on import RunOn

    _fake_ssh(tmp_path, monkeypatch)
    app = make_app(store=store)
    async with app.run_test(size=(140, 45)) as pilot:
        await app.switch_mode("new")
        run_on = app.screen.query_one(RunOn)
        await settle(pilot)
        assert not run_on.display and run_on.offered == ()  # no remotes: no choice
        await app.switch_mode("runs")
        add_remote(store, Remote("late", "127.0.0.1", None, None, "hubtune", None))
        await app.switch_mode("new")  # shown again: the store's remotes changed
        await wait_for(pilot, lambda: run_on.offered == (("late · 0 of 0 slots free",
                                                          "late"),),
                       timeout=20, what="the remote added offered")
        assert run_on.display
