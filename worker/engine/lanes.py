"""Inference lanes: one thread per concurrent request, each on its own model copy or all on one.

A lane here is a request's *slot*: there are as many as a batch holds (`ReadyInfo.slots`),
more than the model's copies. A request runs on one and hands its windows to the model's
compute lanes (worker.engine.batcher), which decode the windows of several slots in one
call. Only the first `copies` slots need a copy loaded; the others open with the last of
them.

A request takes the lowest-numbered free lane. With one client at a time every request
runs on lane 0, the same thread (and with copies, the same model copy), so its caches stay
warm. Whether lanes share one model's weights or hold a copy each is decided at load time
(`common.lane_plan`).

With copies, lanes beyond the first open after READY, each once its copy has loaded on the
lane's own thread (`open_rest`). READY already announces what all copies will take, so the
supervisor counts them from then on; what is chosen here is only when the CPU is spent.
A copy loads as soon as a request has to wait for a lane, once no lane has been busy
for `IDLE_BEFORE_COPY_S`, or once a request has run for `BUSY_BEFORE_COPY_S`: never
beside the first short request after a cold start, which arrives just after READY (a
copy's load costs CPU on the scale of a short request's decode, and would slow it down),
and never by surprise under load, as when a copy loaded on a lane's first use. A long file
that arrives first gets its copies after two seconds, not after it ends. Until a lane is
open, requests queue for the open ones.

The server makes one `Lanes` per model (`for_model`) and hands it to both users: file
requests (`worker.engine.transcriber`) and live sessions (`worker.engine.sessions`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from common.protocol import ReadyInfo

T = TypeVar("T")

log = logging.getLogger("worker")

#: Quiet time after which the lanes still closed load their copies when no request needs them yet.
IDLE_BEFORE_COPY_S = 1.0
#: A request on a lane this long is long work (a long file): the copies load beside it, for
#: its own windows to use (worker.backends.faster_whisper.passes splits them over the lanes).
BUSY_BEFORE_COPY_S = 2.0


class Lanes:
    def __init__(self, count: int, open_now: int | None = None, prepared: int | None = None) -> None:
        """`count` lanes, of which the first `open_now` (all by default) take requests at once.

        Only the first `prepared` (all by default) need `open_rest`'s preparation: the rest
        open with the last of those, at once.
        """
        self._executors = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lane{i}") for i in range(count)]
        self._prepared = count if prepared is None else prepared
        ready = count if open_now is None else max(1, min(open_now, count))
        self._free = list(range(ready))
        self._open = ready
        self._available = asyncio.Semaphore(ready)
        self._waiting = 0  # run() calls waiting for a free lane
        self._changed = asyncio.Event()  # set and replaced whenever a request waits, starts or ends

    @classmethod
    def for_model(cls, info: ReadyInfo) -> Lanes:
        """The lanes of a model just loaded: one per slot (`info.slots`, or `info.concurrency`).
        With a model copy per compute lane only the first copy is loaded by READY: lanes
        1 to copies - 1 load the others in `open_rest`, and the rest open with the last."""
        count = max(1, info.slots or info.concurrency)
        return cls(count, open_now=1 if info.copies > 1 else None, prepared=info.copies)

    @property
    def count(self) -> int:
        """Lanes (slots) that take requests now."""
        return self._open

    @property
    def planned(self) -> int:
        return len(self._executors)

    @property
    def busy(self) -> int:
        """Requests and live decodes on a lane now: more than `count` where slots share passes."""
        return self._open - len(self._free)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run `fn(*args, lane)` on the lowest free lane, waiting for one if all are busy."""
        self._waiting += 1
        self._poke()
        try:
            await self._available.acquire()
        finally:
            self._waiting -= 1
        try:
            lane = min(self._free)  # free lanes are bookkept on the event loop: no lock needed
            self._free.remove(lane)
            try:
                job = partial(fn, *args, lane)
                return await asyncio.get_running_loop().run_in_executor(self._executors[lane], job)
            finally:
                self._free.append(lane)
        finally:
            self._available.release()
            self._poke()

    async def open_rest(
        self, prepare: Callable[[int], None], idle_s: float = IDLE_BEFORE_COPY_S, busy_s: float = BUSY_BEFORE_COPY_S
    ) -> None:
        """Open the lanes not open yet, in order, each once `prepare(lane)` has run on its thread.

        Each preparation starts when a request waits for a lane, no lane has been busy for
        `idle_s`, or no request has started or ended for `busy_s` while one runs (see the
        module's docstring).

        A lane whose preparation fails (say, its copy does not fit in memory after all)
        stays closed with the ones after it: the worker serves with fewer lanes, which the
        heartbeat shows, rather than failing the requests it can serve.
        """
        loop = asyncio.get_running_loop()
        for lane in range(self._open, len(self._executors)):
            if lane < self._prepared:
                await self._until_wanted(idle_s, busy_s)
                try:
                    await loop.run_in_executor(self._executors[lane], prepare, lane)
                except Exception:
                    log.exception("lane %d could not be prepared: serving with %d lane(s)", lane, self._open)
                    return
            self._open += 1
            self._free.append(lane)
            self._available.release()

    async def quiet(self, seconds: float) -> None:
        """Return once no lane has been busy, and no request has waited, for `seconds`."""
        while True:
            changed = self._changed
            if self.busy or self._waiting:
                await changed.wait()
                continue
            try:
                await asyncio.wait_for(changed.wait(), seconds)
            except TimeoutError:
                return

    async def until_busy(self) -> None:
        """Return once a request runs on a lane or waits for one."""
        while not (self.busy or self._waiting):
            await self._changed.wait()

    async def _until_wanted(self, idle_s: float, busy_s: float) -> None:
        """Return once a request waits for a lane, no lane has been busy for `idle_s`, or
        lanes have been busy for `busy_s` with no request starting or ending."""
        while not self._waiting:
            try:
                await asyncio.wait_for(self._changed.wait(), busy_s if self.busy else idle_s)
            except TimeoutError:
                return

    def _poke(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
