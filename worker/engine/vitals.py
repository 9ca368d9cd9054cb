"""The worker's own resource use, for its heartbeat: RSS always, VRAM when it runs on CUDA.

Only the worker knows which memory is its own model's; the supervisor would have to
guess from outside (and asking nvidia-smi per worker per heartbeat would cost a
subprocess each time). RSS is one /proc read, cheap enough for the event loop;
VRAM needs nvidia-smi, so it is sampled in a thread of its own at most every
`vram_every` seconds and heartbeats carry the latest sample.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor

import psutil

from common import nvidia_smi

VRAM_EVERY_S = 10.0


class Vitals:
    def __init__(self, cuda: bool, vram_every: float = VRAM_EVERY_S) -> None:
        self._process = psutil.Process()
        self._pid = os.getpid()
        self._vram_every = vram_every
        # A pool of its own, not asyncio's default executor: asyncio.run() waits for that
        # one at exit, and a hung nvidia-smi must not delay a SHUTDOWN.
        self._probe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vram") if cuda else None
        self._vram: int | None = None
        self._vram_asked = -vram_every
        self._query: Future[int | None] | None = None

    def rss_bytes(self) -> int:
        return int(self._process.memory_info().rss)

    def vram_bytes(self) -> int | None:
        """The latest VRAM sample (None off CUDA or until known); starts the next when due."""
        if self._probe is None:
            return None
        if self._query is not None and self._query.done():
            self._vram = self._query.result() if self._query.exception() is None else None
            self._query = None
        now = time.monotonic()
        if self._query is None and now - self._vram_asked >= self._vram_every:
            self._vram_asked = now
            self._query = self._probe.submit(nvidia_smi.process_memory_bytes, self._pid)
        return self._vram
