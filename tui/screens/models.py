"""Local models and datasets: what the Hugging Face cache holds (and the models installed
packages bundle), of which type, how big, when last used.

Reads `engine.hub.client.list_local` in a thread worker (scanning a large cache
takes a moment). Delete asks first; verify re-hashes every file against the
hash its blob is named by; Use opens the new-run form with the model, or with
the dataset as its training data. A dataset's row is keyed `hf:OWNER/NAME`, as
a config names it, so a model and a dataset of one name stay apart. Ids are
cache folder names: shown as Text, never markup.
"""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Header, Static

from tui.background import background
from tui.formatting import cell, cut, human_bytes, plain
from tui.messages import CacheEntryDeleted, CacheFailed, CacheListed, CacheVerified
from tui.widgets.footer import KeysFooter


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
        yield KeysFooter()

    def on_mount(self) -> None:
        self.sub_title = "local models and datasets"
        table = self.query_one(DataTable)
        for key, label in (("id", "Name"), ("type", "Type"), ("size", "Size"),
                           ("used", "Last used"), ("revisions", "Revisions"),
                           ("weights", "Content")):
            table.add_column(label, key=key)
        self.action_refresh()

    def action_refresh(self) -> None:
        self._scan()

    @background(what="listing the local cache", group="cache", exclusive=True)
    def _scan(self) -> None:
        from engine.core.errors import HubtuneError
        from engine.hub.client import list_local

        try:
            self.post_message(CacheListed(list_local(datasets=True)))
        except HubtuneError as exc:
            self.post_message(CacheListed([], str(exc)))

    def on_cache_listed(self, msg: CacheListed) -> None:
        table = self.query_one(DataTable)
        keep = table.cursor_row
        table.clear()
        for m in msg.models:
            key = _key(m)
            table.add_row(cell(cut(key, 48)), m.kind, human_bytes(m.size), _ago(m.last_used),
                          "-" if m.source == "package" else str(len(m.revisions)),
                          _content(m), key=key)
        if msg.models:
            table.move_cursor(row=min(keep, len(msg.models) - 1))
        self.query_one("#models-summary", Static).update(
            plain(msg.error, multiline=True) if msg.error else _summary(msg.models))

    def _selected(self) -> str | None:
        """The row under the cursor: a model id, or hf:OWNER/NAME for a dataset."""
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    async def action_use(self) -> None:
        key = self._selected()
        if key is None:
            return
        if key.startswith("hf:"):
            from tui.screens.hub import use_dataset

            await self.app.new_run()
            use_dataset(self.app.screen, key.removeprefix("hf:"), None)
            return
        await self.app.new_run(model=key)

    def action_verify(self) -> None:
        key = self._selected()
        if key is not None:
            self.notify(f"Verifying {key}…")
            self._verify(key)

    @background(what="verifying the cached files", group="verify")
    def _verify(self, key: str) -> None:
        from engine.core.errors import HubtuneError
        from engine.hub.client import verify_cached

        try:
            self.post_message(CacheVerified(key, verify_cached(*_repo(key))))
        except HubtuneError as exc:
            self.post_message(CacheFailed(key, str(exc)))

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
        from engine.hub.client import packaged_refusal
        from tui.screens.confirm import ConfirmScreen

        repo = self._selected()
        if repo is None:
            return
        refusal = packaged_refusal(repo)
        if refusal is not None:  # say so now, not after a dialog asked to delete it
            self.notify(refusal, severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._delete(repo)

        self.app.push_screen(ConfirmScreen(f"Delete {cut(repo, 100)} from the local cache?"),
                             answered)

    @background(what="deleting from the cache", group="delete")
    def _delete(self, key: str) -> None:
        from engine.core.errors import HubtuneError
        from engine.hub.client import remove_cached

        repo, repo_type = _repo(key)
        try:
            self.post_message(CacheEntryDeleted(key, remove_cached(repo, None, repo_type)))
        except HubtuneError as exc:
            self.post_message(CacheFailed(key, str(exc)))

    def on_cache_entry_deleted(self, msg: CacheEntryDeleted) -> None:
        self.notify(f"Deleted {msg.repo}, freed {human_bytes(msg.freed)}.")
        self._scan()


def _key(m) -> str:
    return f"hf:{m.id}" if m.repo_type == "dataset" else m.id


def _repo(key: str) -> tuple[str, str]:
    """A row key as (repo id, repo type)."""
    return (key.removeprefix("hf:"), "dataset") if key.startswith("hf:") else (key, "model")


def _content(m) -> str:
    """Weights (or a dataset's data), or only the card and config a look at its details
    cached."""
    if not m.has_weights:
        return "card only"
    return "data" if m.repo_type == "dataset" else "weights"


def _summary(entries: list) -> str:
    if not entries:
        return ("Nothing on this machine yet: download a model or a dataset from the Hub "
                "screen (2).")
    datasets = sum(1 for m in entries if m.repo_type == "dataset")
    models = len(entries) - datasets
    total = human_bytes(sum(m.size for m in entries))
    counts = f"{models} model{'s' if models != 1 else ''}" + (
        f", {datasets} dataset{'s' if datasets != 1 else ''}" if datasets else "")
    return f"{counts}, {total} on disk. u use · v verify · x delete · r refresh"


def _ago(when: float | None) -> str:
    if not when:
        return "-"
    seconds = max(0.0, time.time() - when)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return "just now"
