"""The hub screen: Models / Datasets, search as you type, read a card, download, use.

Search and details run in exclusive thread workers (the newest request
wins); a download runs in its own thread worker that reports bytes through
coalescing messages and stops when its event is set. Everything the hub
sends (ids, tags, authors, file names, the card) is untrusted text: shown as
Text or escaped, never read as markup, controls as escapes. The torchvision
"library" lists built-in backbones instead: that needs torch, so it runs on
the app's engine thread (see tui/engine_thread), never in a second thread.
The search bar (tui/widgets/hub_bar.py) keeps each kind's filters; the screen
lives on across screen switches, so they are kept there too.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Header, Input, Static

from tui.background import background
from tui.formatting import plain
from tui.messages import (
    DownloadFinished,
    HeadsFound,
    HubFailed,
    HubSearchFinished,
    ModelDetailsLoaded,
)
from tui.widgets.dataset_detail import DatasetDetail, details_message
from tui.widgets.download_row import DownloadRow
from tui.widgets.footer import KeysFooter
from tui.widgets.hub_bar import HubBar, HubQuery
from tui.widgets.hub_results import HubResults
from tui.widgets.model_detail import ModelDetail


class HubScreen(Screen):
    """Find a model or a dataset on the hub and put it in the local cache."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    """Below 120 columns the filters go under the search box."""

    BINDINGS = [
        # A priority binding: `/` reaches the search box from a filter or the results
        # alike; typed in the box itself it is a slash (ids are org/name).
        Binding("slash", "focus_search", "Search", priority=True),
        # Shown while a box or filter of the bar has focus, where the number keys and
        # `?` would be typed: the footer then says how to get back to them.
        Binding("escape", "focus_results", "Leave box"),
        Binding("t", "switch_kind", "Models/Datasets"),
        Binding("d", "download", "Download"),
        Binding("c", "cancel_download", "Cancel download"),
        Binding("u", "use_model", "Use"),
    ]

    AUTO_FOCUS = "#hub-results"
    """The results, not the search box: the screen keys (and 1-4 to leave) work at once,
    and `/` is one key away from typing a search. Given as the screen's auto focus (set
    as it is composed, and only where nothing has focus), not in `on_mount`: a `/` typed
    ahead while the screen was being built keeps the search box."""

    kind: reactive[str] = reactive("model")
    """model or dataset: what the results and the detail pane show."""

    def __init__(self, endpoint: str | None = None) -> None:
        super().__init__()
        self.endpoint = endpoint
        """Hub URL; None uses huggingface_hub's (HF_ENDPOINT)."""
        self._selected: str | None = None
        """The repo under the cursor, whose details the pane shows or awaits."""
        self._details = None
        """The model details shown (engine.hub.client.ModelDetails), once loaded."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="hub-offline", classes="-hidden")
        yield HubBar(id="hub-bar")
        with Horizontal(id="hub-body"):
            yield HubResults(id="hub-results")
            yield ModelDetail(id="hub-detail")
            yield DatasetDetail(self.endpoint, id="hub-dataset-detail")
        yield DownloadRow(self.endpoint, id="download-row", classes="-hidden")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one(HubResults).show("model", [])
        self.sub_title = "hub"
        self._search(self.query_one(HubBar).read())

    def watch_kind(self, kind: str) -> None:
        self.set_class(kind == "dataset", "-datasets")
        self.sub_title = "hub · datasets" if kind == "dataset" else "hub"

    # -- search ------------------------------------------------------------

    @on(HubBar.Changed)
    def _bar_changed(self, event: HubBar.Changed) -> None:
        if event.query.kind != self.kind:
            self.kind = event.query.kind
            self._selected = None
            self.query_one(HubResults).show(self.kind, [])
        self._search(event.query)
        if event.submitted:
            self.query_one("#hub-results").focus()

    def _search(self, q: HubQuery) -> None:
        if q.kind == "model" and q.library == "torchvision":
            def job():
                from engine.hub.client import search_models

                return HubSearchFinished(q.query, search_models(q.query, library=q.library),
                                         q.library)

            self.app.engine.submit(job, to=self)
            return
        self._search_worker(q)

    @background(what="searching the hub", group="hub-search", exclusive=True)
    def _search_worker(self, q: HubQuery) -> None:
        from engine.data.hub.search import local_dataset_summaries, search_datasets
        from engine.hub.client import (
            HubError,
            HubUnavailable,
            local_summaries,
            offline_reason,
            search_models,
        )

        try:
            if q.kind == "dataset":
                results = search_datasets(q.query, task=q.task, size=q.size, sort=q.sort,
                                          limit=50, endpoint=self.endpoint)
            else:
                results = search_models(q.query, task=q.task, library=q.library, sort=q.sort,
                                        limit=50, endpoint=self.endpoint)
        except HubUnavailable:
            # Offline: say why once, and list what this machine has instead.
            self.post_message(HubFailed(offline_reason(self.endpoint), offline=True))
            local = (local_dataset_summaries(q.query) if q.kind == "dataset"
                     else local_summaries(q.query))
            self.post_message(HubSearchFinished(q.query, local, q.library, repo_type=q.kind))
            return
        except HubError as exc:
            self.post_message(HubFailed(str(exc)))
            return
        self.post_message(HubSearchFinished(q.query, results, q.library, online=True,
                                            repo_type=q.kind))

    def on_hub_search_finished(self, msg: HubSearchFinished) -> None:
        bar = self.query_one(HubBar).read()
        if msg.repo_type != bar.kind or (bar.kind == "model" and msg.library != bar.library):
            return  # made before the kind or the library filter changed
        if msg.online:
            self.query_one("#hub-offline", Static).add_class("-hidden")
        self.query_one(HubResults).show(msg.repo_type, msg.results)
        if not msg.results:
            self._selected = None  # details of the one picked before are not shown now
            detail = DatasetDetail if msg.repo_type == "dataset" else ModelDetail
            self.query_one(detail).no_results(msg.query)

    def on_hub_failed(self, msg: HubFailed) -> None:
        if not msg.offline:
            self.notify(msg.message, severity="error", timeout=8)
            return
        banner = self.query_one("#hub-offline", Static)
        listed = ("the datasets in the local cache (hf: data trains from them)"
                  if self.kind == "dataset" else
                  "the models on this machine (the hub cache and packaged models)")
        banner.update(plain(
            f"Offline: {msg.message}. Listed below: {listed}; training, runs and the "
            "local-models screen (4) work as usual."))
        banner.remove_class("-hidden")

    # -- details -----------------------------------------------------------

    @on(DataTable.RowHighlighted, "#hub-results")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        repo = event.row_key.value if event.row_key is not None else None
        if repo and repo != self._selected:
            self._selected = repo
            if self.kind == "dataset":
                self.query_one(DatasetDetail).load(repo)
                return
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

    @background(what="reading the model's details", group="hub-details", exclusive=True)
    def _load_details(self, repo: str) -> None:
        from engine.hub.client import model_details

        self.post_message(details_message(model_details, ModelDetailsLoaded, repo,
                                          self.endpoint))

    def on_model_details_loaded(self, msg: ModelDetailsLoaded) -> None:
        d = msg.details
        if d.id != self._selected:
            return
        self._details = d
        from engine.tasks.fit import guessed_heads  # torch-free

        self.query_one(ModelDetail).show(d, guessed_heads(d))
        if d.config:
            # The pipeline tag is a guess; the model's own config says which heads fit.
            # transformers is imported on the engine thread only (see tui/engine_thread).
            def job():
                from engine.tasks.fit import heads_from_config

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

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "focus_results":  # only from the bar: elsewhere Esc has nothing to leave
            focused = self.focused
            return focused is not None and self.query_one(HubBar) in focused.ancestors
        return True

    def action_focus_results(self) -> None:
        self.query_one("#hub-results", DataTable).focus()

    def action_switch_kind(self) -> None:
        self.query_one(HubBar).switch_kind()

    def _picked(self) -> str | None:
        if self._selected is None:
            self.notify(f"Pick a {self.kind} in the results first.", severity="warning")
        return self._selected

    def action_download(self) -> None:
        repo = self._picked()
        if repo is None:
            return
        row = self.query_one(DownloadRow)
        if row.repo is not None:
            self.notify(f"{row.repo} is still downloading; press c to cancel it.",
                        severity="warning")
            return
        if self.kind == "dataset":
            row.start(repo, repo, repo_type="dataset", subset=self._subset(repo))
            return
        from engine.hub.client import HubError, weights_repo  # torch-free

        try:
            fetch = weights_repo(repo)
        except HubError as exc:
            self.notify(str(exc), severity="warning", timeout=8)
            return
        row.start(repo, fetch)

    def _subset(self, repo: str) -> str | None:
        """The subset picked in the detail pane for `repo` (None: its only one)."""
        detail = self.query_one(DatasetDetail)
        return detail.subset if detail.details is not None and detail.details.id == repo \
            else None

    async def action_use_model(self) -> None:
        """Open the new-run form with the model, or with the dataset (and its subset) as
        the training data."""
        repo = self._picked()
        if repo is None:
            return
        if self.kind == "dataset":
            subset = self._subset(repo)
            await self.app.new_run()
            use_dataset(self.app.screen, repo, subset)
            return
        await self.app.new_run(model=repo)

    def action_cancel_download(self) -> None:
        self.query_one(DownloadRow).cancel()

    def on_download_finished(self, msg: DownloadFinished) -> None:
        if msg.repo_type != self.kind:
            return  # listed under the other kind
        self.query_one(HubResults).mark_cached(msg.repo)
        if msg.repo == self._selected:
            if self.kind == "dataset":
                self.query_one(DatasetDetail).load(msg.repo)
            else:
                self._show_model(msg.repo)


def use_dataset(form, repo: str, subset: str | None) -> None:
    """Fill the new-run `form` (tui.screens.new_run.NewRunScreen) with hub dataset `repo`
    as its training data and `subset` as data.subset (cleared when None)."""
    from tui.safe_text import printable

    form.query_one("#f-train-file", Input).value = f"hf:{printable(repo)}"
    # Through the Advanced section: its fields are built only once it is opened.
    from tui.widgets.advanced_settings import AdvancedSettings

    form.query_one(AdvancedSettings).fill({"data.subset": printable(subset or "")})
