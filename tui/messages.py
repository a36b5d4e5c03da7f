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
    gpu: str = "no GPU"
    """This machine's GPUs now (utilisation, memory), as one line."""

    def can_replace(self, other: Message) -> bool:
        return isinstance(other, RunDetailRefreshed) and other.run.id == self.run.id


@dataclass
class HubSearchFinished(Message):
    """Search results for `query` (the newest search wins)."""

    query: str
    results: list
    library: str | None = None
    """The library filter it was made with; results for another are stale."""


@dataclass
class ModelDetailsLoaded(Message):
    details: object
    """engine.hub.client.ModelDetails"""


@dataclass
class HubFailed(Message):
    """A hub request failed; `message` is the one sentence to show."""

    message: str


@dataclass
class DownloadProgressed(Message):
    repo: str
    done: int
    total: int
    bytes_per_s: float

    def can_replace(self, other: Message) -> bool:
        return isinstance(other, DownloadProgressed) and other.repo == self.repo


@dataclass
class DownloadFinished(Message):
    repo: str
    path: str


@dataclass
class DownloadStopped(Message):
    """The download was cancelled or failed; nothing partial was kept."""

    repo: str
    message: str
    cancelled: bool


@dataclass
class DataPreviewed(Message):
    """A data file was read for the new-run form (or could not be: `error`)."""

    path: str
    preview: object | None
    """engine.data.reader.DataPreview"""
    error: str | None = None


@dataclass
class ModelIdsListed(Message):
    """Model ids on this machine, to complete the new-run form's model field."""

    ids: list[str]
