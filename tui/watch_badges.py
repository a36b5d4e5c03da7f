"""Watched runs in the TUI (`train.watch`, #35): how many findings each run has (a
badge in the runs table's status cell and in the run panel's headline), and the
terminal bell when a run that asks for it (`train.watch.bell: true`) has a new one.

A finding is a warning event whose message names its `train.watch.` key
(engine.core.events.WATCH_MARK); the counts are read on the poll thread with the run
list, one query for the runs listed. No widget is touched here.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.core.events import WATCH_MARK

BADGE = "⚑"
"""By a run's status: its watch rules found something (the count after it)."""


def read_watched(store, runs: Sequence) -> dict[int, int]:
    """Run id -> findings of its watch rules, for the runs that have any."""
    return store.event_counts([r.id for r in runs], containing=WATCH_MARK)


def badge(count: int) -> str:
    """The badge text for `count` findings ('' for none)."""
    return f"{BADGE}{count}" if count else ""


def asks_for_bell(run) -> bool:
    """Whether the run's config says `train.watch.bell: true`."""
    watch = ((run.config or {}).get("train") or {}).get("watch")
    return isinstance(watch, dict) and watch.get("bell") is True


class Bell:
    """Says when to ring: a run asking for the bell has more findings than last read. The
    first read rings for nothing (those findings were there before the TUI opened)."""

    def __init__(self) -> None:
        self._seen: dict[int, int] | None = None

    def rings(self, runs: Sequence, counts: dict[int, int]) -> bool:
        seen, self._seen = self._seen, {**(self._seen or {}), **counts}
        if seen is None:
            return False
        return any(counts.get(r.id, 0) > seen.get(r.id, 0) and asks_for_bell(r) for r in runs)
