"""The app's engine thread: jobs run one at a time, in order, on one thread, and a
failure (of a job or of its UI callback) is shown or absorbed, never fatal to the thread."""

from __future__ import annotations

import threading

from pilot_wait import wait_for

from tui.app import make_app


async def test_jobs_run_in_order_on_one_thread_and_survive_failures(store):
    app = make_app(store=store)
    async with app.run_test() as pilot:
        seen: list[tuple[int, str]] = []
        shown: list[int] = []
        running = threading.Event()
        overlap = []

        def job(i: int):
            def run():
                overlap.append(running.is_set())
                running.set()
                seen.append((i, threading.current_thread().name))
                running.clear()
                return shown.append, i
            return run

        def broken_job():
            raise ValueError("the tokenizer would not load")

        def broken_callback():
            return (lambda: 1 / 0,)

        for i in range(5):
            app.engine.submit(job(i))
        app.engine.submit(broken_job)
        app.engine.submit(broken_callback)
        app.engine.submit(job(5))
        await wait_for(pilot, lambda: shown == list(range(6)))
        assert [i for i, _ in seen] == list(range(6))
        assert {name for _, name in seen} == {"hubtune-engine"} and not any(overlap)
        await wait_for(pilot, lambda: any("ValueError: the tokenizer would not load"
                                          in n.message for n in app._notifications))
