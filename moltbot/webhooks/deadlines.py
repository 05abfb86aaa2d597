"""Timers behind the gateway's deadlines: the event loop's by default, a test's when injected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol


class TimerHandle(Protocol):
    """What a scheduled timer gives back: a way to cancel it before it fires."""

    def cancel(self) -> None:
        """Do not fire; harmless after it fired."""


CallLater = Callable[[float, Callable[[], None]], TimerHandle]
"""`call_later(delay, callback)`: run `callback` on the running event loop after `delay` seconds.

It is called on the event loop, and the callback must run there too (it touches transports)."""


def loop_call_later(delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
    """The running event loop's own timer (the production `CallLater`)."""
    return asyncio.get_running_loop().call_later(delay, callback)


@asynccontextmanager
async def deadline(seconds: float, call_later: CallLater = loop_call_later) -> AsyncIterator[None]:
    """Raise `TimeoutError` in the block when the timer of `seconds` fires before it ends.

    The timer is cancelled whichever way the block ends (done, failed, its task cancelled), so
    no timer outlives the request that armed it.
    """
    async with asyncio.timeout(None) as timeout:
        loop = asyncio.get_running_loop()
        # Expiring the asyncio timeout now cancels the block's task, which it turns into
        # TimeoutError; the timer itself only decides when.
        handle = call_later(seconds, lambda: timeout.reschedule(loop.time()))
        try:
            yield
        finally:
            handle.cancel()
