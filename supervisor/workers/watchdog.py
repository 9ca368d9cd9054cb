"""Is the worker alive? Its heartbeats, counted from its spawn, and what its silence costs.

A worker heartbeats in every phase (a spare, a loading worker, a serving one), so one that
falls silent for `heartbeat_timeout` is hung or frozen whatever it was doing: the process
handle kills it, and whoever owns it replaces it (a frozen spare its pool, a frozen load
fails in `heartbeat_timeout` instead of `ready_timeout`). Any message that shows the worker
alive counts, an unreadable heartbeat too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class HeartbeatWatchdog:
    """Calls `on_silence` once if no `beat()` comes for `timeout` seconds; stopped by `cancel()`."""

    def __init__(self, timeout: float, on_silence: Callable[[], None], name: str) -> None:
        self.timeout = timeout
        self._on_silence = on_silence
        self._beat = asyncio.Event()
        self._last_beat_at = time.monotonic()  # its start counts as a sign of life
        self._task = asyncio.create_task(self._watch(), name=name)

    def beat(self) -> None:
        self._last_beat_at = time.monotonic()
        self._beat.set()

    @property
    def silent_for(self) -> float:
        """Seconds since the last sign of life (or the start)."""
        return time.monotonic() - self._last_beat_at

    def cancel(self) -> None:
        if self._task is not asyncio.current_task():
            self._task.cancel()

    async def _watch(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._beat.wait(), self.timeout)
            except TimeoutError:
                self._on_silence()
                return
            self._beat.clear()
