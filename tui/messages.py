"""Messages posted by background work to the UI ("attributes down, messages up").

Thread workers and the engine thread (tui/engine_thread.py) post these; a handler
only renders them. Each says what happened, in the past tense, and carries the
inputs it was computed for, so a handler drops one the user has since moved past.
Nothing here imports torch: the engine's results travel as plain objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from store import EventRecord, Run, Series
from tui.queue_view import QueueSpot, QueueView, SweepView


@dataclass
class RunsRefreshed(Message):
    """A fresh read of the runs list; a burst collapses to the newest."""

    runs: list[Run]
    queue: QueueView = field(default_factory=QueueView)
    """Whether the queue is paused, and each waiting run's place."""
    sweeps: dict[str, SweepView] = field(default_factory=dict)
    """The sweeps of the runs listed: size and best run."""
    watched: dict[int, int] = field(default_factory=dict)
    """Run id -> findings of its watch rules (tui.watch_badges), for runs with any."""

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
    spot: QueueSpot | None = None
    """Its place in the queue and what it waits for, while it waits."""
    sweep: SweepView | None = None
    """The sweep it belongs to, if any."""
    parents: list = field(default_factory=list)
    """[(engine.runs.lineage.Parent, store.Run or None when deleted)]: the runs it comes from."""
    remote: str | None = None
    """The remote the run is on (tui/remote_runs.py); None for this machine's."""
    watched: int = 0
    """Findings of its watch rules so far (tui.watch_badges)."""

    def can_replace(self, other: Message) -> bool:
        return isinstance(other, RunDetailRefreshed) and other.run.id == self.run.id \
            and other.remote == self.remote


@dataclass
class QueueMoved(Message):
    """The watcher started queued runs (`started`, maybe none) after a reap or a
    request from the screen; `error` says why it could not."""

    started: list[int]
    error: str | None = None


@dataclass
class HubSearchFinished(Message):
    """Search results for `query` (the newest search wins)."""

    query: str
    results: list
    library: str | None = None
    """The library filter it was made with; results for another are stale."""
    online: bool = False
    """Results from the hub itself (not the local list shown while offline)."""
    repo_type: str = "model"
    """model or dataset: results of the other kind are stale once the switch moved."""


@dataclass
class ModelDetailsLoaded(Message):
    details: object
    """engine.hub.client.ModelDetails"""


@dataclass
class DatasetDetailsLoaded(Message):
    details: object
    """engine.data.hub.search.DatasetDetails"""


@dataclass
class HubFailed(Message):
    """A hub request failed; `message` is the one sentence to show."""

    message: str
    offline: bool = False
    """The hub cannot be reached at all (offline mode, no route, an endpoint that does
    not answer): the screen says so once, in a banner, instead of a toast per request."""


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
    repo_type: str = "model"
    """model or dataset."""


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


@dataclass
class BackgroundFailed(Message):
    """Background work raised (an engine-thread job or a `tui.background` worker);
    `message` is the one sentence to show.

    The app shows it (HubtuneApp.on_background_failed): the one place such failures go.
    """

    message: str


@dataclass
class HeadsFound(Message):
    """The heads (tasks) that fit `model`, read from its config; None: it could not be read."""

    model: str
    heads: tuple[str, ...] | None


@dataclass
class PlanReady(Message):
    """The layer plan of `config` (engine.training.plan.Plan), or why there is none."""

    key: str
    """What the plan depends on, as the form asked for it; another key is stale."""
    config: object
    """engine.core.config.RunConfig"""
    plan: object | None
    error: str | None = None


@dataclass
class TokensCounted(Message):
    """Token lengths of a data file's text column under a model's tokenizer."""

    key: tuple
    """(model, path, encoding, column) it was counted for; another key is stale."""
    lengths: object | None
    """engine.modeling.lengths.TokenLengths"""
    error: str | None = None


@dataclass
class Predicted(Message):
    """The playground's model answered `text` (as lines of markup), or could not."""

    text: str
    lines: list[str] | None
    error: str | None = None


@dataclass
class CacheListed(Message):
    """The models in the local cache (engine.hub.client.CachedModel), or why not."""

    models: list
    error: str | None = None


@dataclass
class CacheVerified(Message):
    """Every file of `repo` was re-hashed (engine.hub.client.VerifyReport)."""

    repo: str
    report: object


@dataclass
class CacheEntryDeleted(Message):
    """`repo` left the model cache, freeing `freed` bytes."""

    repo: str
    freed: int


@dataclass
class CacheFailed(Message):
    """Verifying or deleting a cached model failed; `message` is the one sentence to show."""

    repo: str
    message: str


@dataclass
class ErrorsReviewed(Message):
    """The worst validation examples of run `run_id` with their inputs, for the run
    panel's errors view (tui.run_info.review_errors), or why there are none."""

    run_id: int
    recorded: object | None
    """store.review.PredictionSet: the evaluation the examples come from."""
    examples: list
    """engine.trained.review.ReviewedExample, worst first."""
    wrong: int = 0
    """How many of all the stored examples the model gets wrong."""
    error: str | None = None
    remote: str | None = None
    """The remote the run is on (tui/remote_reads.py); None for this machine's."""


@dataclass
class ExamplesCompared(Message):
    """The validation examples two runs predict differently (engine.trained.review.Disagreement,
    those where exactly one run is right first), or why they cannot be compared."""

    runs: tuple[int, int]
    found: list | None
    """None when `error` says why there is nothing to show."""
    compared: int = 0
    """Examples both runs recorded."""
    error: str | None = None


@dataclass
class ImportancesFound(Message):
    """A search's parameter importances, as the line the compare screen shows."""

    text: str
