"""The hub screen's detail pane for a dataset: its facts, subsets, splits, features and card,
and the subset a download or a new run takes.

Loads `engine.data.hub.search.dataset_details` in an exclusive thread worker (the
newest pick wins) and posts `DatasetDetailsLoaded` to itself; hub failures bubble to
the screen as `HubFailed`. Everything shown comes from the hub (ids, tags, subset,
split and column names, the card) and is untrusted: escaped or Text, never markup,
controls as escapes. A card's web links open in the browser; no other scheme does.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Markdown, Select, Static

from tui.background import background
from tui.formatting import cell, cut, human_bytes, literal
from tui.messages import DatasetDetailsLoaded, HubFailed
from tui.safe_text import printable

MAX_CARD_CHARS = 200_000
"""A card longer than this is cut: it is read whole into one Markdown widget."""
MAX_SUBSETS_SHOWN = 40
"""Subsets listed with their splits; a dataset of hundreds (languages) would bury the card."""


class DatasetDetail(VerticalScroll):
    def __init__(self, endpoint: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.details = None
        """The details shown (engine.data.hub.search.DatasetDetails), once loaded."""
        self._wanted: str | None = None
        """The dataset whose details are shown or awaited."""
        self._keep: str | None = None
        """The subset picked before the same dataset's details are loaded again (after
        its download): still picked once they are."""

    def compose(self) -> ComposeResult:
        yield Static("Search, then pick a dataset to read about it.", id="dataset-summary")
        yield Select([], prompt="subset", id="dataset-subset", compact=True,
                     classes="-hidden")
        yield Static("", id="dataset-subset-info")
        yield Markdown("", id="dataset-card", open_links=False)

    @property
    def subset(self) -> str | None:
        """The subset picked for a download or a new run (None: the dataset's only one)."""
        select = self.query_one("#dataset-subset", Select)
        if select.has_class("-hidden"):
            return None
        value = select.value
        return value if isinstance(value, str) else None

    def load(self, repo: str) -> None:
        same = self.details is not None and self.details.id == repo
        self._keep = self.subset if same else None
        self._wanted, self.details = repo, None
        self.query_one("#dataset-summary", Static).update(f"[b]{literal(repo)}[/b]\nloading…")
        self.query_one("#dataset-subset").add_class("-hidden")
        self.query_one("#dataset-subset-info", Static).update("")
        self._load(repo)

    def no_results(self, query: str) -> None:
        self._wanted, self.details = None, None
        self.query_one("#dataset-summary", Static).update(
            f"No datasets match {literal(repr(query), 80)}." if query else "No datasets found.")
        # Nothing of a dataset shown before stays under it.
        self.query_one("#dataset-subset").add_class("-hidden")
        self.query_one("#dataset-subset-info", Static).update("")
        self.query_one("#dataset-card", Markdown).update("")

    @background(what="reading the dataset's details", group="hub-details", exclusive=True, failed="_failed")
    def _load(self, repo: str) -> None:
        from engine.data.hub.search import dataset_details

        self.post_message(details_message(dataset_details, DatasetDetailsLoaded, repo,
                                          self.endpoint))

    def _failed(self, sentence: str) -> None:
        """The details could not be read (the app shows why): no "loading…" for ever."""
        if self._wanted is not None:
            self.query_one("#dataset-summary", Static).update(
                f"[b]{literal(self._wanted)}[/b]\nNo details: {literal(sentence, 300)}")

    def on_dataset_details_loaded(self, msg: DatasetDetailsLoaded) -> None:
        if msg.details.id != self._wanted:
            return  # the user moved on while it loaded
        self.show(msg.details)

    def show(self, d) -> None:
        """`d` (DatasetDetails): facts, the subset picker and the card."""
        from engine.data.hub.search import subset_choices

        self.details = d
        rows = f"{d.size_category} rows" if d.size_category else "rows not stated"
        lines = [
            f"[b]hf:{literal(d.id, 96)}[/b]  {'[green]cached[/]' if d.cached else ''}",
            literal(f"{', '.join(d.tasks) or 'no task category'} · license "
                    f"{d.license or '-'}", 200),
            f"{rows} · {human_bytes(d.size)} in {len(d.files)} files",
        ]
        if d.gated:
            lines.append("[yellow]gated: request access on its hub page, then log in[/]")
        if not d.subsets:
            lines.append("[yellow]no data files hubtune reads (parquet, csv, tsv, jsonl)[/]")
        names = [s.name for s in d.subsets[:MAX_SUBSETS_SHOWN]]
        more = len(d.subsets) - len(names)
        lines.append("subsets: " + literal(", ".join(names), 600)
                     + (f" (+{more} more)" if more > 0 else ""))
        self.query_one("#dataset-summary", Static).update("\n".join(lines))
        select = self.query_one("#dataset-subset", Select)
        choices = subset_choices(d)
        with self.prevent(Select.Changed):
            select.set_options([(cell(cut(n, 40)), n) for n in choices])
            if choices:
                select.value = next(s for s in (self._keep, d.default_subset, choices[0])
                                    if s in choices)
        select.set_class(not choices, "-hidden")
        self._show_subset()
        card = printable(d.card, multiline=True, limit=MAX_CARD_CHARS)
        self.query_one("#dataset-card", Markdown).update(card or "*No dataset card.*")

    @on(Select.Changed, "#dataset-subset")
    def _subset_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._show_subset()

    def _show_subset(self) -> None:
        """The picked subset's splits (rows, files, bytes) and features."""
        d = self.details
        if d is None or not d.subsets:
            return
        s = d.subset(self.subset) or d.subset(d.default_subset) or d.subsets[0]
        splits = "\n".join(
            literal(f"{sp.name}: ", 60)
            + (f"{sp.rows:,} rows, " if sp.rows is not None else "rows not stated, ")
            + f"{sp.files} file{'s' if sp.files != 1 else ''}"
            + (f", {human_bytes(sp.size)}" if sp.size is not None else "")
            for sp in s.splits)
        features = literal(", ".join(f"{c} {t}" for c, t in s.features), 800) \
            if s.features else "[dim]not in its card; the new-run form's preview reads them[/]"
        self.query_one("#dataset-subset-info", Static).update(
            f"{splits}\n[b]features[/b] {features}")

    @on(Markdown.LinkClicked, "#dataset-card")
    def _card_link(self, event: Markdown.LinkClicked) -> None:
        """Open a card's web links; any other scheme (file:, javascript:) is left alone."""
        if event.href.lower().startswith(("https://", "http://")):
            self.app.open_url(event.href)
        else:
            self.notify(f"Not opening {event.href[:200]!r}: only web links open.",
                        severity="warning")


def details_message(fetch, loaded, repo: str, endpoint: str | None):
    """On a thread: a model's or dataset's details from the hub as the message that carries
    them (`loaded`), or the HubFailed saying why not (offline: the banner's reason)."""
    from engine.hub.client import HubError, HubUnavailable, offline_reason

    try:
        return loaded(fetch(repo, endpoint=endpoint))
    except HubUnavailable:
        return HubFailed(offline_reason(endpoint), offline=True)
    except HubError as exc:
        return HubFailed(str(exc))
