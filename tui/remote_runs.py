"""The runs of other machines on the runs screen (#37): each remote's runs polled over
its own long-lived SSH session (engine/remote/session.py), never on the UI thread.

`RemoteRuns` is a widget that draws nothing: its thread workers (tui/background.py)
read the remotes the store lists, keep one `RemoteSession` per remote, ping it (a
heartbeat: PING_TIMEOUT_S) and read its `runs ls --json` every few seconds (and,
twice a second while one of its runs is selected and training, that run's record, new
metric points, events and GPU readings for a live panel: tui/remote_detail.py), and
post what they read to it; the runs screen merges those runs with its own and asks it
to stop or resume one there (compare, errors and fork reads: tui/remote_reads.py). A
remote that cannot be reached is one line in the screen's subtitle (ssh's reason,
escaped), tried again after a growing pause; the other hosts go on. Everything a
remote sends is untrusted text: it is
checked for type here and shown escaped by the table and panel.

It must not touch the screen's widgets: it posts `RemoteRuns.Changed` and
`RemoteRuns.RunRead`, and the screen shows them.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from textual.message import Message
from textual.widget import Widget
from textual.worker import get_current_worker

from store import Run
from store.remotes import Remote
from tui.background import background
from tui.messages import RunDetailRefreshed
from tui.queue_view import split_search
from tui.remote_detail import RemoteFollow
from tui.remote_reads import RemoteReads, borrowed
from tui.remote_records import READ_TIMEOUT_S, RemoteRun, read_json, remote_run
from tui.safe_text import printable
from tui.widgets.runs_table import run_key, sort_runs, split_host

POLL_EVERY_S = 2.0
"""How often a reachable remote's runs are read."""
DETAIL_EVERY_S = 0.5
"""How often a selected remote run that trains (or waits) is read for its panel."""
REMOTES_EVERY_S = 5.0
"""How often the store's list of remotes is read (one added from the CLI shows up)."""
RETRY_S = (2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
"""The pause before each next try at a remote that could not be reached."""
PING_TIMEOUT_S = 5.0
"""The heartbeat: each look that lists a remote's runs (every POLL_EVERY_S) first pings
it, and one that does not answer within this is taken for hung (its connection closed,
tried again after a pause, named in the subtitle): a hang is seen within
POLL_EVERY_S + PING_TIMEOUT_S, not READ_TIMEOUT_S, unless it begins mid-read."""
LIMIT = 500
"""Runs read from each remote, newest first (as many as this machine's list shows)."""


def list_argv(search: str | None, status: str | None) -> list[str]:
    """`runs ls` as the screen's search and status filter ask (its host filter is
    applied here, its sort where the machines' runs are merged)."""
    text, sweep = split_search(split_host(search)[0])
    return ["runs", "ls", "--json", "--sort", "-created", "--limit", str(LIMIT),
            *(["--status", status] if status else []),
            *(["--search", text] if text else []), *(["--sweep", sweep] if sweep else [])]


def local_version() -> str:
    from importlib.metadata import version

    return version("hubtune")


@dataclass
class Host:
    """What the screen knows of one remote: its runs as last read, or why it is down."""

    remote: Remote
    runs: list[RemoteRun] = field(default_factory=list)
    down: str | None = None
    """The sentence of the last failed try (ssh's reason); None while it answers."""
    wake: threading.Event = field(default_factory=threading.Event)
    """Set to have its poll thread read now (a new search, a run selected, `r`)."""
    session: Any = None
    """Its live RemoteSession, owned by its poll thread (None while disconnected)."""
    follow: RemoteFollow = field(default_factory=RemoteFollow)
    """Its selected run's panel, followed from the last step read (poll thread only)."""
    listed_at: float = 0.0
    """When its runs were last read (time.monotonic)."""


class RemoteRuns(RemoteReads, Widget):
    """Polls every remote's runs; draws nothing. Attributes down (`filters`,
    `selected`), messages up. Compare and errors reads: tui/remote_reads.py."""

    DEFAULT_CSS = "RemoteRuns { display: none; }"

    @dataclass
    class Changed(Message):
        """A remote's runs, or whether it answers, changed: show the list again."""

    @dataclass
    class RunRead(Message):
        """The selected remote run, as its `runs show --json` gave it, with its panel
        (curves, metrics, GPU line) once read; None: as listed, until then."""

        run: RemoteRun
        detail: RunDetailRefreshed | None = None

    @dataclass
    class Listed(Message):
        """The store's remotes, read on the poll thread (for this widget only)."""

        remotes: list[Remote]

    @dataclass
    class Read(Message):
        """One remote's runs, or why it cannot be reached (`runs` None: the runs last
        read stay listed, and acting on one says what ssh says). For this widget only."""

        name: str
        runs: list[RemoteRun] | None
        down: str | None = None

    def __init__(self, store_path, filters, **kwargs) -> None:
        super().__init__(**kwargs)
        self.store_path = store_path
        self.filters = filters
        """() -> (search text, status filter) as the screen has them now; read by the
        poll threads."""
        self.hosts: dict[str, Host] = {}
        """Each remote by name, as the store last listed them."""
        self.selected: RemoteRun | None = None
        """The remote run under the cursor; read by its host's poll thread."""
        self._relist = threading.Event()
        self._gone = threading.Event()
        """Set when the screen goes: the poll threads end."""

    def on_mount(self) -> None:
        self._list_remotes()

    def on_unmount(self) -> None:
        """Wake the poll threads from their pause, so they see they are cancelled (an
        asyncio executor thread still sleeping would hold up the app's exit)."""
        self._gone.set()
        self._relist.set()
        for host in self.hosts.values():
            host.wake.set()

    # -- read on threads ---------------------------------------------------

    @background(what="reading the remotes", group="poll-remotes", restart_s=REMOTES_EVERY_S)
    def _list_remotes(self) -> None:
        from store import RunStore
        from store.remotes import list_remotes

        worker = get_current_worker()
        store = RunStore(self.store_path)  # a connection of this thread's own
        try:
            listed = None
            while not worker.is_cancelled and not self._gone.is_set():
                remotes = list_remotes(store)
                if remotes != listed:
                    listed = remotes
                    self.post_message(self.Listed(remotes))
                self._relist.wait(REMOTES_EVERY_S)
                self._relist.clear()
        finally:
            store.close()

    @background(what="reading a remote's runs", group="poll-remotes", restart_s=RETRY_S[-1])
    def _poll_remote(self, host: Host) -> None:
        """Read `host`'s runs until it is removed or the screen goes, over one session
        opened again after a failure, each try after a longer pause."""
        from engine.core.errors import HubtuneError

        worker = get_current_worker()
        failures, woken = 0, True
        try:
            while not (worker.is_cancelled or self._gone.is_set()) \
                    and self.hosts.get(host.remote.name) is host:
                try:
                    pause = self._read(host, woken)
                    failures = 0
                except HubtuneError as exc:  # ssh's reason, or the remote's one sentence
                    failures += 1
                    self._disconnect(host)
                    self.post_message(self.Read(host.remote.name, None, str(exc)))
                    pause = RETRY_S[min(failures, len(RETRY_S)) - 1]
                woken = host.wake.wait(pause)
                host.wake.clear()
        finally:
            self._disconnect(host)

    def _read(self, host: Host, woken: bool) -> float:
        """One look at `host`: its runs as the screen filters them (every POLL_EVERY_S,
        or now when `woken`), and its selected run's panel. Returns the pause before the
        next look: short while a selected run of it trains."""
        from engine.remote.session import RemoteSession

        if host.session is None:
            host.session = RemoteSession(host.remote, local_version=local_version())
        name = host.remote.name
        if woken or time.monotonic() - host.listed_at >= POLL_EVERY_S - 0.05:
            host.listed_at = time.monotonic()
            heartbeat(host.session)
            rows = read_json(host.session, list_argv(*self.filters()))
            runs = [r for r in (remote_run(name, d) for d in (rows if isinstance(rows, list)
                                                               else [])) if r is not None]
            self.post_message(self.Read(name, runs))
        selected = self.selected
        if selected is None or selected.remote != name:
            return POLL_EVERY_S
        answer = host.session.call(["runs", "show", str(selected.id), "--json"],
                                   timeout=READ_TIMEOUT_S)
        try:  # a run deleted there meanwhile is dropped from the list on the next read
            run = remote_run(name, json.loads(str(answer.get("stdout") or "")))
        except ValueError:
            run = None
        if answer.get("exit") or run is None:
            return POLL_EVERY_S
        self.post_message(self.RunRead(run, host.follow.read(host.session, run)))
        if run.status in ("running", "queued"):
            return DETAIL_EVERY_S
        return POLL_EVERY_S

    @staticmethod
    def _disconnect(host: Host) -> None:
        session, host.session = host.session, None
        if session is not None:
            session.close()

    # -- on the UI thread ----------------------------------------------------

    def on_remote_runs_listed(self, msg: Listed) -> None:
        msg.stop()
        wanted = {r.name: r for r in msg.remotes}
        before = set(self.hosts)
        for name, host in list(self.hosts.items()):
            if wanted.get(name) != host.remote:  # removed, or changed: polled afresh
                del self.hosts[name]
                host.wake.set()
        for name, remote in wanted.items():
            if name not in self.hosts:
                self.hosts[name] = Host(remote)
                self._poll_remote(self.hosts[name])
        if before:  # a remote's runs go (one with no runs yet changes nothing shown)
            self.post_message(self.Changed())

    def on_remote_runs_read(self, msg: Read) -> None:
        msg.stop()
        host = self.hosts.get(msg.name)
        if host is None:
            return
        runs = host.runs if msg.runs is None else msg.runs
        # A running run's Took cell ticks with each read, as this machine's do.
        if (runs, msg.down) != (host.runs, host.down) or any(
                r.status == "running" for r in runs):
            host.runs, host.down = runs, msg.down
            self.post_message(self.Changed())

    def wake(self) -> None:
        """Read every remote now (the filters changed, or `r`), and show the runs read
        already through the filters as they are now (this machine's list is re-posted
        only when it changes)."""
        self._relist.set()
        for host in self.hosts.values():
            if host.down is None:  # one that is down keeps to its pause (typing a search
                host.wake.set()    # must not hammer a dead host)
        if self.hosts:
            self.post_message(self.Changed())

    def merged(self, local: list[Run], sort: str) -> list[Run]:
        """This machine's runs (`local`, filtered and sorted already) with every
        reachable remote's that the search's `host:NAME` keeps, sorted together."""
        wanted = split_host(self.filters()[0])[1]
        remote = [r for name, h in self.hosts.items() if wanted in (None, name)
                  for r in h.runs]
        if not remote:
            return local
        return sort_runs([*local, *remote], sort)

    def select(self, key: str) -> bool:
        """Note the run under the cursor (a row key): True if it is a remote's."""
        name, _, run_id = key.rpartition(":")
        host = self.hosts.get(name)
        found = [r for r in host.runs if str(r.id) == run_id] if host else []
        self.selected = found[0] if found else None
        if host is not None and found:
            self.post_message(self.RunRead(found[0]))  # as listed, until its details come
            host.wake.set()  # its details now, not at the next poll
        return bool(name)

    def refuse_local_only(self) -> bool:
        """True (having said so) if the run under the cursor is a remote's: only stop,
        resume, fork, marking for compare and the errors view reach another machine's
        runs."""
        run = self.selected
        if run is not None:
            self.notify(f"Run {run.id} is on {run.remote}: s (stop), R (resume), f (fork), "
                        "space + c (compare) and e (errors) work on it from here; for the "
                        "rest, open hubtune there.", severity="warning")
        return run is not None

    @property
    def selected_key(self) -> str | None:
        return run_key(self.selected) if self.selected is not None else None

    def title_parts(self) -> list[str]:
        """The subtitle's line for each remote that cannot be reached now."""
        return [printable(h.down, limit=160) for h in self.hosts.values() if h.down]

    # -- acting on a remote run ----------------------------------------------------

    def act(self, run: RemoteRun, verb: str) -> None:
        """`runs stop|resume ID` on the run's remote, off the UI thread; what it printed
        is a toast, its failure one sentence (tui/background.py)."""
        host = self.hosts.get(run.remote)
        if host is not None:
            self._act(host, ["runs", verb, str(run.id)])

    @background(what="stopping or resuming a remote run", group="remote-actions")
    def _act(self, host: Host, argv: list[str]) -> None:
        from engine.remote.session import RemoteError

        with borrowed(host) as session:  # the poll thread's, if connected
            answer = session.call(argv)
        name = host.remote.name
        if answer.get("exit"):
            raise RemoteError(f"On {name}: {printable(answer.get('error') or 'failed')}")
        said = printable(str(answer.get("stdout") or "").strip(), limit=300) or "Done."
        self.app.call_from_thread(self.app.notify, f"On {name}: {said}")
        host.wake.set()


def heartbeat(session) -> None:
    """Ping `session` (nothing runs there): a RemoteLost sentence if it does not answer
    within PING_TIMEOUT_S, a RemoteError if it answers something else."""
    from engine.remote.session import RemoteError

    if not session.ping(timeout=PING_TIMEOUT_S):
        raise RemoteError(f"Remote {session.remote.name} answered a ping with something "
                          "else; is the same hubtune version installed?")


def detail_of(run: RemoteRun):
    """The run panel's message for a remote run as listed, until its poll thread has
    read its curves, metrics and GPU readings (RunRead.detail)."""
    from store import Series

    empty = Series("loss", [], [])
    return RunDetailRefreshed(
        run=run, loss=empty, val_metric=Series("val_", [], []), latest={},
        gpu=f"on {run.remote}: reading its curves and GPUs…", remote=run.remote)

