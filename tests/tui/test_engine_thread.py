"""The app's engine thread: jobs run one at a time, in order, on one thread; each posts
the message it returns to whoever asked, and a job that raises becomes one
`BackgroundFailed` toast, never fatal to the thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from textual.message import Message

from tests.support.pilot_wait import wait_for
from tui.app import make_app
from tui.messages import BackgroundFailed


@dataclass
class Counted(Message):
    i: int


async def test_jobs_run_in_order_on_one_thread_and_survive_failures(store):
    received: list[int] = []
    failures: list[str] = []
    dispatched: list[Message] = []

    def hook(message: Message) -> None:
        if not isinstance(message, (Counted, BackgroundFailed)):
            return
        if any(message is m for m in dispatched):
            return  # the same message bubbling on from the screen to the app
        dispatched.append(message)
        if isinstance(message, Counted):
            received.append(message.i)
        elif isinstance(message, BackgroundFailed):
            failures.append(message.message)

    app = make_app(store=store)
    async with app.run_test(message_hook=hook, notifications=True) as pilot:
        screen = app.screen
        seen: list[tuple[int, str]] = []
        running = threading.Event()
        overlap = []

        def job(i: int):
            def run():
                overlap.append(running.is_set())
                running.set()
                seen.append((i, threading.current_thread().name))
                running.clear()
                return Counted(i)
            return run

        def broken_job():
            raise ValueError("the tokenizer would not load")

        for i in range(5):
            app.engine.submit(job(i), to=screen)
        app.engine.submit(broken_job, to=screen)
        app.engine.submit(lambda: None, to=screen)  # nothing to say: nothing posted
        app.engine.submit(job(5))  # to the app when no one is named
        await wait_for(pilot, lambda: len(received) >= 6)
        # In order per receiver (the screen's five; the app's one may be handled first:
        # the app and the screen each have their own message queue).
        assert [i for i in received if i < 5] == list(range(5))
        assert sorted(received) == list(range(6))
        assert [i for i, _ in seen] == list(range(6))
        assert {name for _, name in seen} == {"hubtune-engine"} and not any(overlap)
        # The failure is one message, handled by the app: one plain toast.
        assert failures == ["ValueError: the tokenizer would not load"]
        await wait_for(pilot, lambda: any("ValueError: the tokenizer would not load"
                                          in n.message for n in app._notifications))
