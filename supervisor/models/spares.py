"""Warm spares: per backend, one worker process with its ML libraries imported and no model loaded.

Starting Python and importing faster-whisper/CTranslate2 costs about as much as loading
a small model. A spare pays that ahead of time, so the first request after an unload
waits only for the model itself. It holds no model and no VRAM. Once taken, it is
replaced a little later, when the new model's first request has had the CPU to itself.

A spare has imported one backend's libraries, so it can only become a model of that
backend: the pool keeps one per backend that has models configured, each on its own.

A spare is watched like any worker: it heartbeats, and one silent for `heartbeat_timeout`
is killed and replaced. `take` does not hand out one that has been silent for longer than
a live worker ever is, and the registry's launcher treats a spare that then fails to
answer LOAD as the spare's failure: killed, and the load goes on with a fresh process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable

from supervisor.workers.process import WorkerError, WorkerProcess

log = logging.getLogger("asr.spares")

#: Spawns a spare of a backend; the callback is told if it dies while still a spare.
SpawnSpare = Callable[[str, Callable[[WorkerProcess], None]], Awaitable[WorkerProcess]]

REFILL_DELAY = 3.0  # seconds after a spare is taken before the next one starts importing
RETRY_DELAY = 30.0  # after a spare failed to start


class _Place:
    """One backend's place in the pool: its spare, if ready, and the task making the next."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.spare: WorkerProcess | None = None
        self.task: asyncio.Task[None] | None = None


class SparePool:
    def __init__(self, spawn: SpawnSpare, enabled: bool, backends: Iterable[str]) -> None:
        self._spawn = spawn
        self._enabled = enabled
        self._places = {backend: _Place(backend) for backend in dict.fromkeys(backends)}
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The first backend's spare (the one `/health` shows), if it is ready."""
        first = next(iter(self._places.values()), None)
        return first.spare.pid if first is not None and first.spare is not None else None

    @property
    def pids(self) -> dict[str, int]:
        """Every ready spare's pid, by backend."""
        return {backend: place.spare.pid for backend, place in self._places.items() if place.spare is not None}

    def start(self) -> None:
        for place in self._places.values():
            self._refill(place, delay=0.0)

    def take(self, backend: str) -> WorkerProcess | None:
        """The spare for `backend`, if one is ready and alive; the pool then makes another, later.

        A spare that died is not returned; `_lost` has already started its replacement. One
        that has gone silent (frozen) is killed, not returned, and replaced.
        """
        place = self._places.get(backend)
        if place is None or place.spare is None or not place.spare.is_alive:
            return None
        spare, place.spare = place.spare, None
        self._refill(place, delay=REFILL_DELAY)
        if spare.seems_frozen:
            log.warning(
                "warm spare pid=%d (%s) silent for %.1fs: killing it, loading on a fresh worker",
                spare.pid,
                backend,
                spare.silent_for,
            )
            spare.kill()  # its exit watcher reaps it
            return None
        return spare

    async def reconfigure(self, enabled: bool, backends: Iterable[str]) -> None:
        """A reload: keep a spare for each of `backends` (when enabled), end the others' spares."""
        wanted = dict.fromkeys(backends)
        self._enabled = enabled
        dropped = [place for backend, place in self._places.items() if backend not in wanted or not enabled]
        self._places = {backend: self._places.get(backend) or _Place(backend) for backend in wanted}
        await self._empty(dropped)
        for place in self._places.values():
            if place.spare is None:
                self._refill(place, delay=0.0)

    async def close(self) -> None:
        self._closed = True
        await self._empty(list(self._places.values()))

    async def _empty(self, places: list[_Place]) -> None:
        """Stop making spares for `places` and end the ones they hold."""
        tasks = [place.task for place in places if place.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        spares = [place.spare for place in places if place.spare is not None]
        for place in places:
            place.spare, place.task = None, None
        await asyncio.gather(*(spare.stop() for spare in spares))

    def _refill(self, place: _Place, delay: float) -> None:
        if not self._enabled or self._closed or (place.task is not None and not place.task.done()):
            return
        place.task = asyncio.create_task(self._make(place, delay), name=f"spare-refill-{place.backend}")

    async def _make(self, place: _Place, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            spare = await self._spawn(place.backend, functools.partial(self._lost, place))
        except (WorkerError, OSError) as exc:
            log.warning(
                "could not start a warm spare worker for %s (%s); retrying in %.0fs", place.backend, exc, RETRY_DELAY
            )
            place.task = None
            self._refill(place, delay=RETRY_DELAY)
            return
        if self._closed:
            await spare.stop()
            return
        place.spare = spare
        log.debug("warm spare ready backend=%s pid=%d", place.backend, spare.pid)

    def _lost(self, place: _Place, worker: WorkerProcess) -> None:
        """A spare died before it was used (killed, OOM): make another, after a pause."""
        if worker is place.spare:
            log.warning(
                "warm spare pid=%d (%s) exited (code %s); starting another", worker.pid, place.backend, worker.exit_code
            )
            place.spare = None
            self._refill(place, delay=REFILL_DELAY)
