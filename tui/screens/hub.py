"""The hub screen: search the hub as you type, read a model's card, download it.

Search and details run in exclusive thread workers (the newest request
wins); a download runs in its own worker that reports bytes through
coalescing messages and stops when its event is set. Everything the hub
sends (ids, tags, authors, file names, the card) is untrusted text: shown as
Text or escaped, never read as markup, controls as escapes. The torchvision
"library" lists built-in backbones instead: that needs torch, so it runs on
the app's engine thread (see tui/engine_thread), never in a second thread.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import (
    DataTable,
    Footer,
    Header,
    Input,
    Select,
    Static,
)
from textual.worker import Worker, WorkerState

from tui.formatting import cell, cut, plain
from tui.messages import (
    DownloadFinished,
    HeadsFound,
    HubFailed,
    HubSearchFinished,
    ModelDetailsLoaded,
)
from tui.widgets.download_row import DownloadRow
from tui.widgets.model_detail import ModelDetail

TASKS = ("text-classification", "fill-mask", "sentence-similarity", "feature-extraction",
         "token-classification", "question-answering", "text-generation",
         "text2text-generation", "translation", "summarization", "image-classification")
LIBRARIES = (("transformers", "transformers"), ("sentence-transformers", "sentence-transformers"),
             ("timm", "timm"), ("peft", "peft"), ("torchvision (built in)", "torchvision"))
SEARCH_DEBOUNCE_S = 0.3


class HubScreen(Screen):
    """Find a model on the hub and put it in the local cache."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    """Below 100 columns the filters go under the search box."""

    BINDINGS = [
        # A priority binding: `/` reaches the search box from a filter or the results
        # alike; typed in the box itself it is a slash (ids are org/name).
        Binding("slash", "focus_search", "Search", priority=True),
        Binding("escape", "focus_results", "Results", show=False),
        Binding("d", "download", "Download"),
        Binding("c", "cancel_download", "Cancel download"),
        Binding("u", "use_model", "Use model"),
    ]

    def __init__(self, endpoint: str | None = None) -> None:
        super().__init__()
        self.endpoint = endpoint
        """Hub URL; None uses huggingface_hub's (HF_ENDPOINT)."""
        self._debounce: Timer | None = None
        self._results: dict[str, object] = {}
        self._selected: str | None = None
        """The repo under the cursor, whose details the pane shows or awaits."""
        self._details = None
        """The details shown (engine.hub.client.ModelDetails), once loaded."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="hub-offline", classes="-hidden")
        with Container(id="hub-bar"):
            yield Input(placeholder="Search the hub…", id="hub-query")
            yield Select([(t, t) for t in TASKS], prompt="any task", id="hub-task")
            yield Select(LIBRARIES, prompt="any library", id="hub-library")
            yield Select([("most downloaded", "downloads"), ("most liked", "likes"),
                          ("recently updated", "updated")], value="downloads",
                         allow_blank=False, id="hub-sort")
        with Horizontal(id="hub-body"):
            yield DataTable(id="hub-results", cursor_type="row", zebra_stripes=True)
            yield ModelDetail(id="hub-detail")
        yield DownloadRow(self.endpoint, id="download-row", classes="-hidden")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#hub-results", DataTable)
        for key, label in (("cached", " "), ("id", "Model"), ("task", "Task"),
                           ("downloads", "Downloads"), ("likes", "Likes"),
                           ("updated", "Updated")):
            table.add_column(label, key=key)
        self.sub_title = "hub"
        self.query_one("#hub-query", Input).focus()
        self._search("")

    # -- search ------------------------------------------------------------

    @on(Input.Changed, "#hub-query")
    def _query_changed(self) -> None:
        if self._debounce is not None:
            self._debounce.stop()
        self._debounce = self.set_timer(SEARCH_DEBOUNCE_S, self._search_now)

    @on(Input.Submitted, "#hub-query")
    def _query_submitted(self) -> None:
        self._search_now()
        self.query_one("#hub-results").focus()

    @on(Select.Changed)
    def _filter_changed(self) -> None:
        self._search_now()

    def _search_now(self) -> None:
        self._search(self.query_one("#hub-query", Input).value.strip())

    def _filters(self) -> tuple[str | None, str | None, str]:
        task = self.query_one("#hub-task", Select).value
        library = self.query_one("#hub-library", Select).value
        sort = self.query_one("#hub-sort", Select).value
        return (task if isinstance(task, str) else None,
                library if isinstance(library, str) else None, str(sort))

    def _search(self, query: str) -> None:
        # Filters are read here, on the UI thread; the worker gets plain values.
        task, library, sort = self._filters()
        if library == "torchvision":
            def job():
                from engine.hub.client import search_models

                return HubSearchFinished(query, search_models(query, library=library), library)

            self.app.engine.submit(job, to=self)
            return
        self._search_worker(query, task, library, sort)

    @work(thread=True, exclusive=True, group="hub-search", exit_on_error=False)
    def _search_worker(self, query: str, task: str | None, library: str | None,
                       sort: str) -> None:
        from engine.hub.client import (
            HubError,
            HubUnavailable,
            local_summaries,
            offline_reason,
            search_models,
        )

        try:
            results = search_models(query, task=task, library=library, sort=sort, limit=50,
                                    endpoint=self.endpoint)
        except HubUnavailable:
            # Offline: say why once, and list what this machine has instead.
            self.post_message(HubFailed(offline_reason(self.endpoint), offline=True))
            self.post_message(HubSearchFinished(query, local_summaries(query), library))
            return
        except HubError as exc:
            self.post_message(HubFailed(str(exc)))
            return
        self.post_message(HubSearchFinished(query, results, library, online=True))

    def on_hub_search_finished(self, msg: HubSearchFinished) -> None:
        if msg.library != self._filters()[1]:
            return  # made before the library filter changed
        if msg.online:
            self.query_one("#hub-offline", Static).add_class("-hidden")
        table = self.query_one("#hub-results", DataTable)
        table.clear()
        self._results = {m.id: m for m in msg.results}
        for m in msg.results:
            table.add_row("✓" if m.cached else "", cell(cut(m.id, 44)),
                          cell(cut(m.task or "-", 24)), f"{m.downloads:,}", f"{m.likes:,}",
                          cell((m.updated or "")[:10]), key=m.id)
        if not msg.results:
            self.query_one(ModelDetail).no_results(msg.query)

    def on_hub_failed(self, msg: HubFailed) -> None:
        if not msg.offline:
            self.notify(msg.message, severity="error", timeout=8)
            return
        banner = self.query_one("#hub-offline", Static)
        banner.update(plain(
            f"Offline: {msg.message}. Listed below: the models on this machine (the hub "
            "cache and packaged models); training, runs and the local-models screen (4) "
            "work as usual."))
        banner.remove_class("-hidden")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A search or details worker that failed outside HubError (the hub listed an id
        huggingface_hub will not look up) says so, rather than 'loading…' forever."""
        worker = event.worker
        if event.state == WorkerState.ERROR and worker.group in ("hub-search", "hub-details"):
            error = worker.error
            self.notify(f"{type(error).__name__}: {error}", severity="error", timeout=8)

    # -- details -----------------------------------------------------------

    @on(DataTable.RowHighlighted, "#hub-results")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        repo = event.row_key.value if event.row_key is not None else None
        if repo and repo != self._selected:
            self._selected = repo
            self.query_one(ModelDetail).show_loading(repo)
            self._show_model(repo)

    def _show_model(self, repo: str) -> None:
        """Load `repo`'s details: from the hub, or a torchvision backbone's on the engine
        thread (it needs torch)."""
        if repo.startswith("pkg:"):  # described from its own files, on the engine thread
            def packaged():
                from engine.hub.client import packaged_details

                return ModelDetailsLoaded(packaged_details(repo))

            self.app.engine.submit(packaged, to=self)
            return
        if not repo.startswith("torchvision:"):
            self._load_details(repo)
            return

        def job():
            from engine.hub.client import torchvision_details

            return ModelDetailsLoaded(torchvision_details(repo))

        self.app.engine.submit(job, to=self)

    @work(thread=True, exclusive=True, group="hub-details", exit_on_error=False)
    def _load_details(self, repo: str) -> None:
        from engine.hub.client import HubError, HubUnavailable, model_details, offline_reason

        try:
            details = model_details(repo, endpoint=self.endpoint)
        except HubUnavailable:
            self.post_message(HubFailed(offline_reason(self.endpoint), offline=True))
            return
        except HubError as exc:
            self.post_message(HubFailed(str(exc)))
            return
        self.post_message(ModelDetailsLoaded(details))

    def on_model_details_loaded(self, msg: ModelDetailsLoaded) -> None:
        d = msg.details
        if d.id != self._selected:
            return
        self._details = d
        self.query_one(ModelDetail).show(d, d.heads)
        if d.config:
            # The pipeline tag is a guess; the model's own config says which heads fit.
            # transformers is imported on the engine thread only (see tui/engine_thread).
            def job():
                from engine.modeling.heads import heads_from_config

                heads = heads_from_config(d.config)
                return HeadsFound(d.id, heads) if heads else None

            self.app.engine.submit(job, to=self)

    def on_heads_found(self, msg: HeadsFound) -> None:
        d = self._details
        if d is not None and msg.model == d.id == self._selected and msg.heads:
            # After the pane has laid out the details once: two updates before a layout
            # pass can leave the text at the width it had before its scrollbar appeared.
            self.query_one(ModelDetail).show(d, msg.heads)

    # -- download ----------------------------------------------------------

    def action_focus_search(self) -> None:
        query = self.query_one("#hub-query", Input)
        if query.has_focus:
            query.insert_text_at_cursor("/")
        else:
            query.focus()

    def action_focus_results(self) -> None:
        self.query_one("#hub-results", DataTable).focus()

    def action_download(self) -> None:
        repo = self._selected
        if repo is None:
            self.notify("Pick a model in the results first.", severity="warning")
            return
        row = self.query_one(DownloadRow)
        if row.repo is not None:
            self.notify(f"{row.repo} is still downloading; press c to cancel it.",
                        severity="warning")
            return
        from engine.hub.client import HubError, weights_repo  # torch-free

        try:
            fetch = weights_repo(repo)
        except HubError as exc:
            self.notify(str(exc), severity="warning", timeout=8)
            return
        row.start(repo, fetch)

    async def action_use_model(self) -> None:
        if self._selected is None:
            self.notify("Pick a model in the results first.", severity="warning")
            return
        await self.app.new_run(model=self._selected)

    def action_cancel_download(self) -> None:
        self.query_one(DownloadRow).cancel()

    def on_download_finished(self, msg: DownloadFinished) -> None:
        self._mark_cached(msg.repo)

    def _mark_cached(self, repo: str) -> None:
        table = self.query_one("#hub-results", DataTable)
        if repo in self._results:
            table.update_cell(repo, "cached", "✓")
        if repo == self._selected:
            self._show_model(repo)
