"""One background thread for the TUI's engine work: plans, token counts, heads, predictions.

Each of those imports transformers (and torch) on first use. Two threads
importing them at once can get a module back half-initialised (transformers'
lazy modules and Python's import-deadlock avoidance meet badly), so every
such job runs here, one at a time, in the order asked; a newer request thus
always finishes after an older one. The thread is a daemon: quitting the app
never waits for a plan to finish.

A job returns one typed message (tui/messages.py), posted to whoever asked;
a job that raises becomes one `BackgroundFailed` posted to the app, which shows
it (one place for every such failure). Jobs never touch widgets.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from textual.message import Message
from textual.message_pump import MessagePump

from tui.messages import BackgroundFailed

Job = Callable[[], Message | None]
"""Work for the engine thread; it returns the message to post (None: nothing to say)."""


class EngineThread:
    def __init__(self, app) -> None:
        self.app = app
        self._jobs: queue.SimpleQueue[tuple[Job, MessagePump]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Job, *, to: MessagePump | None = None) -> None:
        """Run `job` here, after those before it; post its message to `to` (else the app)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="hubtune-engine",
                                                daemon=True)
                self._thread.start()
        self._jobs.put((job, to if to is not None else self.app))

    def _loop(self) -> None:
        while True:
            job, to = self._jobs.get()
            try:
                message = job()
            except Exception as exc:  # a job's failure is shown, never lost
                message, to = BackgroundFailed(f"{type(exc).__name__}: {exc}"), self.app
            if message is not None and self.app.is_running:  # not to a closing app
                try:  # thread-safe; a closed screen refuses it
                    to.post_message(message)
                except Exception:  # the app or the screen went meanwhile
                    pass
