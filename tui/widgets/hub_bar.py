"""The hub screen's search bar: Models / Datasets, the query, and the filters of each.

Models filter by task (pipeline tag) and library, datasets by task category and size
category; both sort by downloads, likes or recency. Each kind keeps its own task
filter, so switching back and forth (or to another screen and back: the screen
lives on) finds them as they were left. Typing posts `HubBar.Changed` after a
short pause, Enter and a changed filter at once; the screen searches.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Container
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Input, Select

from engine.data.hub.search import SIZE_CATEGORIES

MODEL_TASKS = ("text-classification", "fill-mask", "sentence-similarity", "feature-extraction",
               "token-classification", "question-answering", "text-generation",
               "text2text-generation", "translation", "summarization", "image-classification")
"""Hub pipeline tags offered as a model filter."""
DATASET_TASKS = ("text-classification", "token-classification", "question-answering",
                 "summarization", "translation", "text-generation", "fill-mask",
                 "sentence-similarity", "image-classification")
"""Hub task categories offered as a dataset filter: the ones a hubtune head trains on."""
LIBRARIES = (("transformers", "transformers"), ("sentence-transformers", "sentence-transformers"),
             ("timm", "timm"), ("peft", "peft"), ("torchvision (built in)", "torchvision"))
KINDS = (("Models", "model"), ("Datasets", "dataset"))
SEARCH_DEBOUNCE_S = 0.3


@dataclass(frozen=True)
class HubQuery:
    """What to search for, read on the UI thread for a worker."""

    kind: str
    """model or dataset"""
    query: str
    task: str | None
    library: str | None
    """Models only."""
    size: str | None
    """Datasets only: a size category."""
    sort: str


class HubBar(Container):
    class Changed(Message):
        """The query, a filter or the kind changed: search again."""

        def __init__(self, query: HubQuery, *, submitted: bool = False) -> None:
            super().__init__()
            self.query = query
            self.submitted = submitted
            """Enter in the search box (the results take the focus)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._debounce: Timer | None = None
        self._tasks: dict[str, str | None] = {"model": None, "dataset": None}
        """Each kind's task filter, kept while the other kind is shown."""

    def compose(self) -> ComposeResult:
        yield Select(KINDS, value="model", allow_blank=False, id="hub-kind")
        yield Input(placeholder="Search the hub…", id="hub-query")
        yield Select([(t, t) for t in MODEL_TASKS], prompt="any task", id="hub-task")
        yield Select(LIBRARIES, prompt="any library", id="hub-library")
        yield Select([(s, s) for s in SIZE_CATEGORIES], prompt="any size", id="hub-size",
                     classes="-hidden")
        yield Select([("most downloaded", "downloads"), ("most liked", "likes"),
                      ("recently updated", "updated")], value="downloads",
                     allow_blank=False, id="hub-sort")

    @property
    def kind(self) -> str:
        return str(self.query_one("#hub-kind", Select).value)

    def read(self) -> HubQuery:
        def value(sid: str) -> str | None:
            v = self.query_one(sid, Select).value
            return v if isinstance(v, str) else None

        kind = self.kind
        return HubQuery(kind=kind, query=self.query_one("#hub-query", Input).value.strip(),
                        task=value("#hub-task"),
                        library=value("#hub-library") if kind == "model" else None,
                        size=value("#hub-size") if kind == "dataset" else None,
                        sort=str(self.query_one("#hub-sort", Select).value))

    def switch_kind(self) -> None:
        """Models <-> Datasets (the `t` key)."""
        select = self.query_one("#hub-kind", Select)
        select.value = "dataset" if select.value == "model" else "model"

    @on(Select.Changed, "#hub-kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        event.stop()
        kind = self.kind
        other = "model" if kind == "dataset" else "dataset"
        task = self.query_one("#hub-task", Select)
        self._tasks[other] = task.value if isinstance(task.value, str) else None
        tasks = DATASET_TASKS if kind == "dataset" else MODEL_TASKS
        with self.prevent(Select.Changed):
            task.set_options([(t, t) for t in tasks])  # this clears the selection
            if self._tasks[kind] is not None:
                task.value = self._tasks[kind]
        self.query_one("#hub-library").set_class(kind != "model", "-hidden")
        self.query_one("#hub-size").set_class(kind != "dataset", "-hidden")
        self.query_one("#hub-query", Input).placeholder = (
            "Search hub datasets…" if kind == "dataset" else "Search the hub…")
        self.post_message(self.Changed(self.read()))

    @on(Select.Changed)
    def _filter_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.select.id != "hub-kind":  # that one has its own handler above
            self.post_message(self.Changed(self.read()))

    @on(Input.Changed, "#hub-query")
    def _query_changed(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(
            SEARCH_DEBOUNCE_S, lambda: self.post_message(self.Changed(self.read())))

    @on(Input.Submitted, "#hub-query")
    def _query_submitted(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self.post_message(self.Changed(self.read(), submitted=True))
