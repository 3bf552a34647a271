"""Wait for a condition instead of sleeping: the tests' one way to synchronise.

A fixed sleep is either too short on a loaded machine (a flaky failure) or
too long everywhere else, and it proves nothing: it says "by now it has
probably happened". These helpers poll the condition itself, return as soon
as it holds, and fail naming what never happened when the deadline passes.

:func:`wait_until` is for test threads (it blocks); :func:`await_until` is for
coroutines (it yields to the loop between polls, so work on that loop, such
as a server under test, keeps running while it waits).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["await_until", "wait_until"]


def wait_until(
    condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it is true; raise :class:`TimeoutError` naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for: {what}")
        time.sleep(interval)


async def await_until(
    condition: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.01
) -> None:
    """:func:`wait_until` for a coroutine: the loop runs between polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for: {what}")
        await asyncio.sleep(interval)
