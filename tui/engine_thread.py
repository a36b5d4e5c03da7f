"""One background thread for the TUI's engine work: plans, token counts, heads, predictions.

Each of those imports transformers (and torch) on first use. Two threads
importing them at once can get a module back half-initialised (transformers'
lazy modules and Python's import-deadlock avoidance meet badly), so every
such job runs here, one at a time, in the order asked; a newer request thus
always finishes after an older one. The thread is a daemon: quitting the app
never waits for a plan to finish.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

Job = Callable[[], tuple | None]
"""Work for the engine thread; it returns (callable, *args) to call on the UI thread, or None."""


class EngineThread:
    def __init__(self, app) -> None:
        self.app = app
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="hubtune-engine",
                                                daemon=True)
                self._thread.start()
        self._jobs.put(job)

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                result: Any = job()
            except Exception as exc:  # a job's failure is shown, never lost
                result = (self.app.notify, f"{type(exc).__name__}: {exc}")
            if result is not None and self.app.is_running:  # not to a closing app
                try:
                    self.app.call_from_thread(*result)
                except Exception:  # the app closed, or the screen went, meanwhile
                    pass
