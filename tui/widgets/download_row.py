"""The hub screen's download line: one download at a time (a model, or a dataset or one
subset of it), its progress and its cancel.

The download runs in a thread worker that reports bytes through coalescing messages
and stops when its event is set; nothing partial is kept. When it ends the row hides
and the screen hears `DownloadFinished` (to mark the model cached) or a toast says
why it stopped.
"""

from __future__ import annotations

import threading
import time

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from tui.background import background
from tui.formatting import human_bytes, styled
from tui.messages import DownloadFinished, DownloadProgressed, DownloadStopped


class DownloadRow(Horizontal):
    def __init__(self, endpoint: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.repo: str | None = None
        """The model or dataset being downloaded, if one is."""
        self._stop: threading.Event | None = None

    def compose(self) -> ComposeResult:
        yield Label("", id="download-label")
        yield ProgressBar(id="download-bar", show_eta=True)

    def start(self, repo: str, fetch: str, *, repo_type: str = "model",
              subset: str | None = None) -> None:
        """Download `fetch` (a torchvision backbone's weights repo, else `repo` itself); a
        dataset's `subset` alone when one is given."""
        self.repo, self._stop = repo, threading.Event()
        self.remove_class("-hidden")
        self.query_one(ProgressBar).update(total=None, progress=0)
        what = "$repo (subset $subset)" if subset else "$repo"
        self.query_one(Label).update(
            styled(f"{what}: starting…", repo=repo, subset=subset or "") if fetch == repo
            else styled("$repo: weights from $fetch, starting…", repo=repo, fetch=fetch))
        self._download(repo, fetch, self._stop, repo_type, subset)

    def cancel(self) -> None:
        if self._stop is not None:
            self._stop.set()

    @background(what="downloading", group="download", failed="_failed")
    def _download(self, repo: str, fetch: str, stop: threading.Event, repo_type: str,
                  subset: str | None) -> None:
        from engine.core.errors import HubtuneError
        from engine.data.hub.fetch import download_dataset
        from engine.hub.client import DownloadCancelled, download_model

        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            rate = done / max(time.monotonic() - started, 1e-6)
            self.post_message(DownloadProgressed(repo, done, total, rate))

        try:
            if repo_type == "dataset":
                path = download_dataset(fetch, subset=subset, progress=progress, stop=stop,
                                        endpoint=self.endpoint)
            else:
                path = download_model(fetch, progress=progress, stop=stop,
                                      endpoint=self.endpoint)
        except DownloadCancelled:
            self.post_message(DownloadStopped(repo, f"Cancelled {repo}; nothing partial was kept.",
                                              cancelled=True))
            return
        except HubtuneError as exc:  # a HubError, or a DataError naming a subset's problem
            self.post_message(DownloadStopped(repo, str(exc), cancelled=False))
            return
        self.post_message(DownloadFinished(repo, str(path), repo_type))

    def on_download_progressed(self, msg: DownloadProgressed) -> None:
        self.query_one(ProgressBar).update(total=max(msg.total, 1), progress=msg.done)
        self.query_one(Label).update(styled(
            f"$repo: {human_bytes(msg.done)} of {human_bytes(msg.total)} · "
            f"{human_bytes(msg.bytes_per_s)}/s · c cancels", repo=msg.repo))

    def on_download_finished(self, msg: DownloadFinished) -> None:
        self._end()
        self.notify(f"Downloaded {msg.repo}.")  # and on to the screen, which marks it cached

    def on_download_stopped(self, msg: DownloadStopped) -> None:
        self._end()
        msg.stop()
        self.notify(msg.message, severity="warning" if msg.cancelled else "error", timeout=8)

    def _failed(self, sentence: str) -> None:
        """The download broke in a way it could not say itself (the app shows why): the
        row goes, so the screen never shows a bar that no longer moves."""
        self._end()

    def _end(self) -> None:
        self.repo, self._stop = None, None
        self.add_class("-hidden")
