"""Waiting on the UI in Pilot tests: poll a condition, never a bare sleep.

On a loaded machine a fixed pause proves nothing: a check that something did *not*
happen passes because it has not happened *yet*, and one that reads state set by a
later message fails. Wait for the condition itself (`wait_for`), or, before a
negative check, for the app to have finished what it was asked (`settle`)."""

from __future__ import annotations

import asyncio
import threading

POLLERS = frozenset({"poll-runs", "poll-remotes", "_loader"})
"""Workers that run as long as their screen (by group or name): never finished, so never
waited on (`poll-remotes`: tui/remote_runs.py's). `_loader` is Textual's DirectoryTree's,
which waits for folders to read."""


async def wait_for(pilot, predicate, timeout: float = 10.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"{what} not met in {timeout:g} s"
        await pilot.pause(0.05)


async def settle(pilot, timeout: float = 30.0) -> None:
    """Wait until the app has done all it was asked so far: the engine thread's jobs
    submitted before now, every thread worker but the screens' pollers, and each
    message they posted."""
    app = pilot.app
    done = threading.Event()
    app.engine.submit(done.set)  # jobs run in order: this one runs after those before it
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await pilot.pause()  # every message queued on the screen handled
        busy = [w.name for w in app.workers if not w.is_finished
                and w.group not in POLLERS and w.name not in POLLERS]
        if done.is_set() and not busy:
            await pilot.pause()  # and what the last of them posted
            return
        assert loop.time() < deadline, f"the app was still busy after {timeout:g} s: {busy}"
        await pilot.pause(0.05)


async def select_run(pilot, run_id: int, timeout: float = 10.0) -> None:
    """Put the runs screen's cursor on `run_id` and wait until it is there and selected,
    with the cursor's own messages handled: a key pressed next acts on this run."""
    screen = pilot.app.screen
    table = screen.query_one("RunsTable")

    def there() -> bool:
        return screen.selected_id == run_id and table.holds(run_id) \
            and table.cursor_row == table.get_row_index(str(run_id))

    screen.select_run(run_id)
    await wait_for(pilot, there, timeout, what=f"run {run_id} under the cursor")
    await settle(pilot)
    assert there(), f"the cursor left run {run_id}"


def field(app, selector: str):
    """The value of `selector` on the screen shown now; None until that screen has it."""
    found = app.screen.query(selector)
    return found.first().value if found else None
