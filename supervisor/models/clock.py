"""Time as the model owners see it: replaceable, so TTLs and back-offs are tested without waiting."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    def timer(self, seconds: float) -> asyncio.Future[None]:
        """A future that resolves `seconds` from now; cancel it to disarm.

        Armed at once (not when first awaited), so a test that advances a fake clock
        right after the owner armed its TTL cannot slip in before the timer exists.
        """
        ...


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    def timer(self, seconds: float) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fired: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(seconds, _resolve, fired)
        fired.add_done_callback(lambda _: handle.cancel())
        return fired


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
