"""Local models: what the Hugging Face cache holds, how big, when last used.

Reads `engine.hub.client.list_cached` in a thread worker (scanning a large cache
takes a moment). Delete asks first; verify re-hashes every file against the
hash its blob is named by; Use opens the new-run form with the model.
Model ids are cache folder names: shown as Text, never markup.
"""

from __future__ import annotations

import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tui.formatting import cell, cut, human_bytes, plain
from tui.messages import CacheEntryDeleted, CacheFailed, CacheListed, CacheVerified


class LocalModelsScreen(Screen):
    BINDINGS = [
        Binding("u", "use", "Use"),
        Binding("v", "verify", "Verify"),
        Binding("delete,x", "delete", "Delete"),
        Binding("r", "refresh", "Refresh"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="models-pane"):
            yield DataTable(id="models-table", cursor_type="row", zebra_stripes=True)
            yield Static("Reading the model cache…", id="models-summary")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "local models"
        table = self.query_one(DataTable)
        for key, label in (("id", "Model"), ("size", "Size"), ("used", "Last used"),
                           ("revisions", "Revisions"), ("weights", "Weights")):
            table.add_column(label, key=key)
        self.action_refresh()

    def action_refresh(self) -> None:
        self._scan()

    @work(thread=True, exclusive=True, group="cache", exit_on_error=False)
    def _scan(self) -> None:
        from engine.core.errors import HubtuneError
        from engine.hub.client import list_local

        try:
            self.post_message(CacheListed(list_local()))
        except HubtuneError as exc:
            self.post_message(CacheListed([], str(exc)))

    def on_cache_listed(self, msg: CacheListed) -> None:
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        for m in msg.models:
            table.add_row(cell(cut(m.id, 48)), human_bytes(m.size), _ago(m.last_used),
                          "package" if m.source == "package" else str(len(m.revisions)),
                          "yes" if m.has_weights else "card only", key=m.id)
        if msg.models:
            table.move_cursor(row=min(keep, len(msg.models) - 1))
        total = sum(m.size for m in msg.models)
        self.query_one("#models-summary", Static).update(
            plain(msg.error, multiline=True) if msg.error
            else f"{len(msg.models)} models, {human_bytes(total)} on disk. "
                 "u use · v verify · x delete · r refresh"
            if msg.models else "No models on this machine yet: download one from the Hub "
                               "screen (2).")

    def _selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    async def action_use(self) -> None:
        repo = self._selected()
        if repo is not None:
            await self.app.new_run(model=repo)

    def action_verify(self) -> None:
        repo = self._selected()
        if repo is not None:
            self.notify(f"Verifying {repo}…")
            self._verify(repo)

    @work(thread=True, group="verify", exit_on_error=False)
    def _verify(self, repo: str) -> None:
        from engine.core.errors import HubtuneError
        from engine.hub.client import verify_cached

        try:
            self.post_message(CacheVerified(repo, verify_cached(repo)))
        except HubtuneError as exc:
            self.post_message(CacheFailed(repo, str(exc)))

    def on_cache_verified(self, msg: CacheVerified) -> None:
        report, repo = msg.report, msg.repo
        if report.ok:
            self.notify(f"{repo}: all {report.checked} files match their hashes.", timeout=8)
            return
        bad = [*report.corrupted, *report.missing]
        self.notify(f"{repo}: {len(report.corrupted)} corrupted and {len(report.missing)} "
                    f"missing files ({', '.join(bad[:3])}); delete it and download again.",
                    severity="error", timeout=8)

    def on_cache_failed(self, msg: CacheFailed) -> None:
        self.notify(msg.message, severity="error")

    def action_delete(self) -> None:
        from tui.screens.confirm import ConfirmScreen

        repo = self._selected()
        if repo is None:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(repo)

        self.app.push_screen(ConfirmScreen(f"Delete {cut(repo, 100)} from the model cache?"),
                             answered)

    @work(thread=True, group="delete", exit_on_error=False)
    def _delete(self, repo: str) -> None:
        from engine.core.errors import HubtuneError
        from engine.hub.client import remove_cached

        try:
            self.post_message(CacheEntryDeleted(repo, remove_cached(repo)))
        except HubtuneError as exc:
            self.post_message(CacheFailed(repo, str(exc)))

    def on_cache_entry_deleted(self, msg: CacheEntryDeleted) -> None:
        self.notify(f"Deleted {msg.repo}, freed {human_bytes(msg.freed)}.")
        self._scan()


def _ago(when: float | None) -> str:
    if not when:
        return "-"
    seconds = max(0.0, time.time() - when)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"
