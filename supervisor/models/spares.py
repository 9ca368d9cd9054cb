"""One warm spare: a worker process with its ML libraries imported and no model loaded.

Starting Python and importing faster-whisper/CTranslate2 costs about as much as loading
a small model. A spare pays that ahead of time, so the first request after an unload
waits only for the model itself. It holds no model and no VRAM. Once taken, it is
replaced a little later, when the new model's first request has had the CPU to itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from supervisor.workers.process import WorkerError, WorkerProcess

log = logging.getLogger("asr.spares")

#: Spawns a spare; the callback is told if it dies while still a spare.
SpawnSpare = Callable[[Callable[[WorkerProcess], None]], Awaitable[WorkerProcess]]

REFILL_DELAY = 3.0  # seconds after a spare is taken before the next one starts importing
RETRY_DELAY = 30.0  # after a spare failed to start


class SparePool:
    def __init__(self, spawn: SpawnSpare, enabled: bool, backend: str = "faster-whisper") -> None:
        self.backend = backend
        self._spawn = spawn
        self._enabled = enabled
        self._spare: WorkerProcess | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        return self._spare.pid if self._spare else None

    def start(self) -> None:
        self._refill(delay=0.0)

    def take(self, backend: str) -> WorkerProcess | None:
        """The spare, if one is ready for `backend`; the pool then makes another, later.

        A spare that died is not returned; `_lost` has already started its replacement.
        """
        spare = self._spare
        if spare is None or backend != self.backend or not spare.is_alive:
            return None
        self._spare = None
        self._refill(delay=REFILL_DELAY)
        return spare

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._spare is not None:
            spare, self._spare = self._spare, None
            await spare.stop()

    def _refill(self, delay: float) -> None:
        if not self._enabled or self._closed or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.create_task(self._make(delay), name="spare-refill")

    async def _make(self, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            spare = await self._spawn(self._lost)
        except (WorkerError, OSError) as exc:
            log.warning("could not start a warm spare worker (%s); retrying in %.0fs", exc, RETRY_DELAY)
            self._task = None
            self._refill(delay=RETRY_DELAY)
            return
        if self._closed:
            await spare.stop()
            return
        self._spare = spare
        log.debug("warm spare ready pid=%d", spare.pid)

    def _lost(self, worker: WorkerProcess) -> None:
        """A spare died before it was used (killed, OOM): make another, after a pause."""
        if worker is self._spare:
            log.warning("warm spare pid=%d exited (code %s); starting another", worker.pid, worker.exit_code)
            self._spare = None
            self._refill(delay=REFILL_DELAY)
