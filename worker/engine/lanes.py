"""Inference lanes: one thread per concurrent request, each on its own model copy or all on one.

A request takes the lowest-numbered free lane. With one client at a time every request
runs on lane 0, the same thread (and with copies, the same model copy), so its caches stay
warm. Whether lanes share one model's weights or hold a copy each is decided at load time
(`worker.engine.lane_plan`).

Lanes beyond the first may open after READY: with copies, each extra lane's copy loads on
that lane's own thread just after READY (`open_rest`), so a cold request waits for one load,
not all of them, and the memory all copies take is reported in READY and reached within a
load's time, rather than growing under load later, on a first concurrent request, as when
copies were loaded lazily. Until a lane is open, requests queue for the open ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger("worker")


class Lanes:
    def __init__(self, count: int, open_now: int | None = None) -> None:
        """`count` lanes, of which the first `open_now` (all by default) take requests at once."""
        self._executors = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lane{i}") for i in range(count)]
        ready = count if open_now is None else max(1, min(open_now, count))
        self._free = list(range(ready))
        self._open = ready
        self._available = asyncio.Semaphore(ready)

    @property
    def count(self) -> int:
        """Lanes that take requests now (the heartbeat's `lanes`)."""
        return self._open

    @property
    def planned(self) -> int:
        return len(self._executors)

    @property
    def busy(self) -> int:
        return self._open - len(self._free)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args, lane)` on the lowest free lane, waiting for one if all are busy."""
        async with self._available:
            lane = min(self._free)  # free lanes are bookkept on the event loop: no lock needed
            self._free.remove(lane)
            try:
                job = partial(fn, *args, lane)
                return await asyncio.get_running_loop().run_in_executor(self._executors[lane], job)
            finally:
                self._free.append(lane)

    async def open_rest(self, prepare: Callable[[int], None]) -> None:
        """Open the lanes not open yet, in order, each once `prepare(lane)` has run on its thread.

        A lane whose preparation fails (say, its copy does not fit in memory after all)
        stays closed with the ones after it: the worker serves with fewer lanes, which the
        heartbeat shows, rather than failing the requests it can serve.
        """
        loop = asyncio.get_running_loop()
        for lane in range(self._open, len(self._executors)):
            try:
                await loop.run_in_executor(self._executors[lane], prepare, lane)
            except Exception:
                log.exception("lane %d could not be prepared: serving with %d lane(s)", lane, self._open)
                return
            self._open += 1
            self._free.append(lane)
            self._available.release()
