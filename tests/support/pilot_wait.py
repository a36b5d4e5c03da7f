"""Waiting on the UI in Pilot tests: poll a condition, never a bare sleep."""

from __future__ import annotations

import asyncio


async def wait_for(pilot, predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await pilot.pause(0.05)
