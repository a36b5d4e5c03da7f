"""Messages posted by background workers to the UI ("attributes down, messages up")."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from store import EventRecord, Run, Series


@dataclass
class RunsRefreshed(Message):
    """A fresh read of the runs list; a burst collapses to the newest."""

    runs: list[Run]

    def can_replace(self, other: Message) -> bool:
        return isinstance(other, RunsRefreshed)


@dataclass
class RunDetailRefreshed(Message):
    """The selected run's curves, latest metrics and event tail."""

    run: Run
    loss: Series
    val_metric: Series
    latest: dict[str, float]
    events: list[EventRecord] = field(default_factory=list)

    def can_replace(self, other: Message) -> bool:
        return isinstance(other, RunDetailRefreshed) and other.run.id == self.run.id
