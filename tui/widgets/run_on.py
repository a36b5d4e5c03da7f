"""The new-run form's "run on" choice (#37): this machine, or one of the remotes with its
free slots, read over SSH off the UI thread. Hidden while there are no remotes, so the
form of a machine without any is as it was. Launching with a remote chosen does what
`hubtune train CONFIG --remote NAME --detach` (or `--queue`) does
(engine/remote/start.py).

The remotes and their slots are read in a thread worker after the form's first paint,
and again when the choice is focused once they are STALE_S old, and whenever the form is
shown if the store's remotes changed meanwhile (`remote add` in another terminal); a
remote that cannot be reached is still offered, labelled so, and launching on it says
ssh's reason. A fork of a remote's run sets the choice to that remote (`choose`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Label, Select

from tui.background import background
from tui.safe_text import printable

HERE = "@here"
"""The choice's value for this machine (a remote's name never starts with @)."""
STALE_S = 30.0
"""Free slots read longer ago than this are read again when the choice is focused."""


class RunOn(Vertical):
    """Where Launch and Queue start the run: this machine (the default) or a remote."""

    DEFAULT_CSS = """
    RunOn { height: auto; display: none; }
    RunOn.-shown { display: block; }
    """

    @dataclass
    class Read(Message):
        """The remotes as read, each (label, name) for the choice."""

        options: list[tuple[str, str]]

    def compose(self) -> ComposeResult:
        yield Label("Run on", classes="field-label")
        yield Select([("this machine", HERE)], id="f-run-on", value=HERE,
                     allow_blank=False, compact=True)

    read_at: float = 0.0
    """When the remotes' slots were last asked for (time.monotonic)."""
    offered: tuple[tuple[str, str], ...] = ()
    """The remotes offered, each (label, name), as last read."""
    listed: tuple[str, ...] | None = None
    """The remotes' names as the store last listed them (written by the read thread)."""
    wanted: str | None = None
    """A remote to choose once it is offered (a fork of its run); None: nothing pending."""
    fork_of: tuple[str, int] | None = None
    """(remote, run id) the form was forked from: a run launched there records it as its
    parent (`train --parent`); launched elsewhere, it has none."""

    def on_mount(self) -> None:
        self.read_at = time.monotonic()
        self.call_after_refresh(self.read_again)  # after the form's first paint

    def on_descendant_focus(self) -> None:
        """Slots free up and fill: a choice last read a while ago is read again."""
        if time.monotonic() - self.read_at > STALE_S:
            self._read_now()

    def _read_now(self) -> None:
        self.read_at = time.monotonic()
        self._read()

    def read_again(self) -> None:
        """The form is shown again: read the remotes if the store's list changed since."""
        self._read(only_if_changed=True)

    def choose(self, name: str | None) -> None:
        """Choose remote `name` (None: this machine) now, or once it is offered."""
        self.wanted = name
        if name is None or name in {n for _, n in self.offered}:
            self.query_one(Select).value = name or HERE
            self.wanted = None
        else:
            self.read_again()  # added since the last read, perhaps

    def place_fork(self, remote: str | None, forked_from: str | None) -> None:
        """A fork runs where its run ran: this machine, or `remote`, whose run
        `forked_from` (NAME:ID) it is (named in the screen's title; nothing records it
        there)."""
        self.choose(remote)
        name, _, run_id = (forked_from or "").rpartition(":")
        self.fork_of = (name, int(run_id)) if remote and run_id.isdigit() else None
        if forked_from:
            self.screen.sub_title = f"fork of run {printable(forked_from, limit=60)}"

    @property
    def remote(self) -> str | None:
        """The remote chosen, or None for this machine."""
        value = self.query_one(Select).value
        return value if isinstance(value, str) and value != HERE else None

    def launch(self, cfg, queue: bool, act, done) -> None:
        """Start the form's run: on this machine with the form's `act` and `done`
        (App.act_on_run), or on the remote chosen as `train CONFIG --remote NAME
        --detach` (or `--queue`) does, off the UI thread, then show the runs screen."""
        name = self.remote
        if name is None:
            self.app.act_on_run(act, done)
            return
        parent = self.fork_of[1] if self.fork_of and self.fork_of[0] == name else None

        def there_done() -> None:
            self.fork_of = None
            self.app.switch_mode("runs")

        self.app.act_on_run(start_there(name, cfg, queue=queue, started=[],
                                        parent_id=parent), there_done)

    @background(what="reading the remotes' free slots", group="run-on", exclusive=True)
    def _read(self, only_if_changed: bool = False) -> None:
        from engine.core.errors import HubtuneError
        from engine.remote.session import RemoteSession
        from store import RunStore
        from store.remotes import list_remotes
        from tui.remote_records import read_json
        from tui.remote_runs import local_version

        store = RunStore(self.app.store.path)  # a connection of this thread's own
        try:
            remotes = list_remotes(store)
        finally:
            store.close()
        names = tuple(r.name for r in remotes)
        if only_if_changed and names == self.listed:
            return
        self.listed = names
        if not remotes:
            if self.offered:  # the last one was removed: the choice goes
                self.post_message(self.Read([]))
            return
        self.post_message(self.Read([(f"{r.name} · reading its slots…", r.name)
                                     for r in remotes]))
        options = []
        for r in remotes:
            try:
                with RemoteSession(r, local_version=local_version()) as s:
                    slots = read_json(s, ["queue", "slots", "--json"])
                slots = [x for x in slots if isinstance(x, dict)] \
                    if isinstance(slots, list) else []
                free = sum(1 for x in slots if x.get("free") is True)
                label = f"{r.name} · {free} of {len(slots)} slots free"
            except HubtuneError:
                label = f"{r.name} · cannot be reached now"
            options.append((label, r.name))
        self.post_message(self.Read(options))

    def on_run_on_read(self, msg: Read) -> None:
        msg.stop()
        select = self.query_one(Select)
        chosen = select.value
        names = {name for _, name in msg.options}
        self.offered = tuple((printable(label, limit=80), name) for label, name in msg.options)
        select.set_options([("this machine", HERE), *self.offered])
        if self.wanted in names:
            chosen, self.wanted = self.wanted, None
        select.value = chosen if chosen in names else HERE
        self.set_class(bool(self.offered), "-shown")


def start_there(name: str, cfg, *, queue: bool, started: list,
                parent_id: int | None = None):
    """The `act` for App.act_on_run that starts `cfg` on remote `name` (on its thread),
    a fork of its run `parent_id` when given: appends the remote's run id to `started`
    and returns the sentence to show."""

    def act(store) -> str:
        from engine.remote.session import RemoteError, RemoteSession
        from engine.remote.start import start_on_remote, started_id
        from store.remotes import get_remote
        from tui.remote_runs import local_version

        with RemoteSession(get_remote(store, name), local_version=local_version()) as s:
            answer = start_on_remote(s, cfg, detach=True, queued=queue, parent_id=parent_id)
        run_id = started_id(answer)
        if answer.get("exit") or run_id is None:
            raise RemoteError(f"On {name}: "
                              f"{printable(answer.get('error') or 'no run was started')}")
        started.append(run_id)
        return (f"Run {run_id} {'queued' if queue else 'started'} on {name}; it trains "
                "there, whatever happens to this connection.")

    return act
