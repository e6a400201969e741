"""Polling a condition under a deadline (trio time: virtual under a mock clock)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import trio


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    timeout_s: float = 600.0,
    poll_s: float = 0.25,
) -> None:
    """Poll ``condition`` (sync or async) every ``poll_s`` until it is true; fail the test with
    ``trio.TooSlowError`` after ``timeout_s``.

    The defaults suit tests under a mock clock (minutes of virtual time cost little); tests on
    the real clock pass their own deadline.
    """
    with trio.fail_after(timeout_s):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await trio.sleep(poll_s)
