"""What the runs screen shows of the run queue and of sweeps, read on its poll thread.

Textual-free and torch-free: the queue's order and slots come from `engine.runs.queue`, a
sweep's best run from `engine.runs.sweep.rank_sweep`, so the TUI says what `hubtune queue
ls` and `hubtune runs compare --sweep` say. Nothing here writes to the store or starts
a worker; the runs screen's watcher does that (`RunWatcher.kick_queue`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.core.errors import HubtuneError
from tui.formatting import cut
from tui.safe_text import printable

SWEEP_PREFIX = "sweep:"
"""A search for `sweep:ID` lists that sweep's runs only."""
AWAITS_CHARS = 6
"""The slots a queued run waits for, as the table's status cell names them: with its
place (`#12 · gpu0/…`) no wider than `interrupted`, so the table's first columns still
fit 80 columns."""


@dataclass(frozen=True)
class QueueSpot:
    """A run waiting in the queue, as the runs screen shows it."""

    position: int
    """1 for the next to start."""
    awaits: str
    """What it waits for, short: the slots (`gpu1`, `gpu0/1`), `paused` (the queue), or
    `ready` (slots are free for it and every run ahead: it starts at the next check)."""
    detail: str
    """Its place and what it waits for, in words, for the run panel."""

    @property
    def cell(self) -> str:
        """The status cell: `#2 · gpu1`."""
        return f"#{self.position} · {self.awaits}"


@dataclass(frozen=True)
class QueueView:
    """The queue as the last read found it."""

    paused: bool = False
    """`queue pause` (or P here): nothing waiting starts until resumed."""
    spots: dict[int, QueueSpot] = field(default_factory=dict)
    """Waiting runs by id."""


@dataclass(frozen=True)
class SweepView:
    """One sweep whose runs are listed."""

    size: int
    """Runs in the sweep, listed or not."""
    best: int | None
    """The id of its best run by the main metric (engine.runs.sweep.rank_sweep); None before
    any has a value."""


def read_queue(store, monitor, *, resume_hint: str = "press P") -> QueueView:
    """The queue's pause switch and each waiting run's place: a settings read and one
    query when nothing waits, so an idle queue costs the poll next to nothing.
    `resume_hint`: how the reader resumes a paused queue (a key here, a command in the
    CLI)."""
    from engine.runs.queue import queue_entries, read_slots

    paused = store.queue_paused()
    if not store.has_waiting():
        return QueueView(paused)
    try:
        slots = read_slots(store, monitor)
    except HubtuneError:  # a bad HUBTUNE_CPU_SLOTS: `queue ls` says so; the order stands
        slots = []
    blocked = [s for s in slots if not s.free]
    free = len(slots) - len(blocked)
    spots, ahead = {}, 0
    for entry in queue_entries(store, slots):
        if entry.position is None:
            continue
        ahead += entry.slots_wanted
        if paused:
            awaits, why = "paused", f"waits for the queue to be resumed ({resume_hint})"
        elif ahead <= free:  # free slots for it and every run ahead: the next kick starts it
            awaits, why = "ready", "starts at the next check: enough slots are free"
        else:
            awaits = _short(blocked) or "slots"
            why = f"waits for {entry.waiting_for}"
            if blocked:
                why += " · " + ", ".join(_holder(s) for s in blocked)
        spots[entry.run_id] = QueueSpot(entry.position, awaits,
                                        f"queued #{entry.position} · {why}")
    return QueueView(paused, spots)


def read_sweeps(store, runs: Sequence) -> dict[str, SweepView]:
    """Each sweep with a run in `runs`: its size and its best run, over all its runs."""
    from engine.runs.sweep import rank_sweep

    out = {}
    for sweep_id in sorted({r.sweep_id for r in runs if r.sweep_id}):
        members = store.list_runs(sweep=sweep_id, limit=None)
        ranked = rank_sweep(members)
        best = ranked[0].run.id if ranked and ranked[0].rank == 1 else None
        out[sweep_id] = SweepView(len(members), best)
    return out


def queue_title(queue: QueueView, search: str | None) -> list[str]:
    """The runs screen's subtitle parts for a sweep listed, the runs waiting and a
    paused queue."""
    parts = []
    sweep = split_search(search)[1]
    if sweep:
        parts.append(f"sweep {printable(sweep, limit=12)}")  # as typed in the search
    if queue.spots:
        parts.append(f"{len(queue.spots)} queued")
    if queue.paused:
        parts.append("queue paused (P resumes)")
    return parts


def split_search(text: str | None) -> tuple[str | None, str | None]:
    """The search box's text as (text to search for, sweep id): `sweep:ID` anywhere in
    it keeps that sweep's runs only; the rest is searched as typed."""
    import re

    sweep = None

    def take(match: re.Match) -> str:
        nonlocal sweep
        sweep = match.group(1)
        return " "

    rest = re.sub(rf"(?i)(?:^|\s){SWEEP_PREFIX}(\S+)", take, text or "").strip()
    return rest or None, sweep


def _short(slots: Sequence) -> str:
    """`gpu0/1/3`: the slots' kind once, then their numbers."""
    kinds = {s.name.rstrip("0123456789") for s in slots}
    if len(kinds) == 1:
        text = kinds.pop() + "/".join(str(s.index) for s in slots)
    else:
        text = "/".join(s.name for s in slots)
    return cut(text, AWAITS_CHARS)


def _holder(slot) -> str:
    if slot.held_by:
        runs = ", ".join(str(i) for i in slot.held_by)
        return f"{slot.name} held by run{'s' if len(slot.held_by) > 1 else ''} {runs}"
    return f"{slot.name} busy (another user's process)"
