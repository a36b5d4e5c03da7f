"""The hub screen's detail pane: one model's facts, files and card.

Fed an `engine.hub.client.ModelDetails` and the heads that fit it. Everything
in it comes from the hub (ids, tags, licence, file names, the card) and is
untrusted: shown escaped or as Text, never read as markup, controls as
escapes. A card's web links open in the browser; no other scheme does.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Markdown, Static

from tui.formatting import cut, human_bytes, literal
from tui.safe_text import printable

MAX_FILES_SHOWN = 200
"""Files listed in the detail pane; a repo of thousands would bury the card."""
MAX_CARD_CHARS = 200_000
"""A model card longer than this is cut: it is read whole into one Markdown widget."""


class ModelDetail(VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Static("Search, then pick a model to read about it.", id="hub-summary")
        yield Markdown("", id="hub-card", open_links=False)

    def show_loading(self, repo: str) -> None:
        self.query_one("#hub-summary", Static).update(f"[b]{literal(repo)}[/b]\nloading…")

    def no_results(self, query: str) -> None:
        """Say nothing matched, with no card of a model shown before under it."""
        self.query_one("#hub-summary", Static).update(
            f"No models match {literal(repr(query), 80)}." if query else "No models found.")
        self.query_one("#hub-card", Markdown).update("")

    def show(self, d, heads: tuple[str, ...]) -> None:
        """`d` (ModelDetails) with `heads`, the tasks whose head fits it."""
        lines = [
            f"[b]{literal(d.id, 96)}[/b]  {'[green]cached[/]' if d.cached else ''}",
            literal(f"{d.task or 'no task'} · {d.library or '-'} · license {d.license or '-'}",
                    200),
            f"{_parameters(d.parameters)} · download {human_bytes(d.download_size)}",
            f"heads: {literal(', '.join(heads), 200)}",
        ]
        if d.needs_remote_code:
            lines.append("[yellow]needs its own code: set model.trust_remote_code to use it[/]")
        if not d.has_safetensors:
            lines.append("[yellow]no safetensors weights: needs model.allow_pickle[/]")
        if d.gated:
            lines.append("[yellow]gated: accept its terms on the hub and log in[/]")
        files = "\n".join(literal(f"{cut(printable(f.path), 30):<30} {human_bytes(f.size):>9}")
                          for f in d.files[:MAX_FILES_SHOWN])
        if len(d.files) > MAX_FILES_SHOWN:
            files += f"\n… and {len(d.files) - MAX_FILES_SHOWN} more files"
        self.query_one("#hub-summary", Static).update("\n".join(lines) + "\n\n" + files)
        # Markdown renders text as text (no content markup), but control characters in
        # the card would reach the terminal: shown as escapes, newlines kept.
        card = printable(d.card, multiline=True, limit=MAX_CARD_CHARS)
        self.query_one("#hub-card", Markdown).update(card or "*No model card.*")

    @on(Markdown.LinkClicked, "#hub-card")
    def _card_link(self, event: Markdown.LinkClicked) -> None:
        """Open a card's web links; any other scheme (file:, javascript:) is left alone."""
        if event.href.lower().startswith(("https://", "http://")):
            self.app.open_url(event.href)
        else:
            self.notify(f"Not opening {event.href[:200]!r}: only web links open.",
                        severity="warning")


def _parameters(n: int | None) -> str:
    if not n:
        return "parameters not reported"
    if n < 1_000_000:
        return f"{n:,} parameters"
    return f"{n / 1e6:,.1f}M parameters"
