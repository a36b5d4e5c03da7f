"""Background work in the TUI, one way.

Two kinds of work leave the UI thread. Work that imports torch or transformers (plans,
heads, predictions) queues on the one engine thread (tui/engine_thread.py). Everything
else that may block (SQLite, the hub, the file system, starting or deleting a run) runs
in a Textual thread worker declared with `@background(...)` below.

Either way a failure reaches the user exactly once, as one `BackgroundFailed` toast the
app shows: a `HubtuneError` or `StoreError` as its own sentence, anything else as what
was being done and the exception. A method may also name `failed`, called on the UI
thread with that sentence so its widget can leave its "loading…" state. Work that must
not die (the runs poll) names `restart_s`: it starts again after that pause, and the
same failure is not shown again while it repeats.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from textual import work
from textual.worker import get_current_worker

from tui.messages import BackgroundFailed


def failure_sentence(exc: BaseException, what: str) -> str:
    """The one sentence shown for `exc` raised while doing `what`."""
    from engine.core.errors import HubtuneError
    from store import StoreError

    if isinstance(exc, (HubtuneError, StoreError)):
        return str(exc)
    return f"Internal error while {what} ({type(exc).__name__}: {exc})."


def background(*, what: str, group: str, exclusive: bool = False,
               failed: str | None = None, restart_s: float | None = None) -> Callable:
    """Run the decorated method of a widget, screen or app in a thread worker; see the
    module docstring for how its failures are shown."""

    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        def runner(node, *args: Any, **kwargs: Any) -> Any:
            worker = get_current_worker()
            shown = None
            while not worker.is_cancelled:
                try:
                    return method(node, *args, **kwargs)
                except Exception as exc:  # shown once, never a frozen screen
                    sentence = failure_sentence(exc, what)
                    if sentence != shown:
                        node.app.post_message(BackgroundFailed(sentence))
                        shown = sentence
                    if failed is not None:
                        node.app.call_from_thread(getattr(node, failed), sentence)
                    if restart_s is None:
                        return None
                    _pause(worker, restart_s)
            return None

        return work(thread=True, exclusive=exclusive, group=group,
                    exit_on_error=False)(runner)

    return decorate


def _pause(worker, seconds: float) -> None:
    """Sleep `seconds` in short steps, ending early once the worker is cancelled."""
    deadline = time.monotonic() + seconds
    while not worker.is_cancelled and time.monotonic() < deadline:
        time.sleep(min(0.1, seconds))
