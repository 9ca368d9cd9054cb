"""One worker process's phase: how far its start-up has got, and how it ends.

    phase      entered when                                         may go to
    SPAWNING   the process is started                               SPARE
    SPARE      it says SPARE: libraries imported, no model yet      LOAD_SENT
    LOAD_SENT  `load()` sent LOAD; it must answer within            LOADING, READY
               `Timeouts.answer` (the heartbeat it sends at once)
    LOADING    a heartbeat sent after LOAD came: alive, loading     READY
    READY      it says READY: serving its model
    STOPPING   `stop()` began its phases (SHUTDOWN, SIGTERM, SIGKILL)
    EXITED     the process ended and was reaped

Every phase but EXITED may also go to STOPPING (a stop) or EXITED (a death); STOPPING
only to EXITED. A message that would move the worker any other way (a second SPARE, a
READY nobody asked for) changes nothing. A READY in LOAD_SENT counts as LOAD's answer too.

A start-up that can no longer reach READY (the worker's DYING, a SPARE, READY or DYING
that cannot be read, the process's end) is not a phase but the start-up's failure: whoever
awaits a phase gets it, now or later, so a spare that died in its pool fails the load sent
to it at once. Once READY was reached, nothing fails the start-up any more: a DYING then is
the serving worker's death, told to callers by the process's end.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable

from supervisor.workers.errors import WorkerLoadError

log = logging.getLogger("asr.worker")


class Phase(enum.Enum):
    SPAWNING = "spawning"
    SPARE = "spare"
    LOAD_SENT = "load sent"
    LOADING = "loading"
    READY = "ready"
    STOPPING = "stopping"
    EXITED = "exited"


#: The start-up in order: `Phases.reached` only grows along it.
_STARTUP = (Phase.SPAWNING, Phase.SPARE, Phase.LOAD_SENT, Phase.LOADING, Phase.READY)
_ENDS = frozenset({Phase.STOPPING, Phase.EXITED})

#: The legal moves: phase → the phases it may go to.
MOVES: dict[Phase, frozenset[Phase]] = {
    Phase.SPAWNING: frozenset({Phase.SPARE}) | _ENDS,
    Phase.SPARE: frozenset({Phase.LOAD_SENT}) | _ENDS,
    Phase.LOAD_SENT: frozenset({Phase.LOADING, Phase.READY}) | _ENDS,
    Phase.LOADING: frozenset({Phase.READY}) | _ENDS,
    Phase.READY: _ENDS,
    Phase.STOPPING: frozenset({Phase.EXITED}),
    Phase.EXITED: frozenset(),
}


class Phases:
    """The one writer of a worker's phase, and the way to await one of its start-up phases."""

    def __init__(self, describe: Callable[[], str]) -> None:
        """`describe` names the worker in the log (`model=… pid=…`): its model may change."""
        self._describe = describe
        self._phase = Phase.SPAWNING
        self._reached = Phase.SPAWNING
        self._failure: WorkerLoadError | None = None
        self._waiters: list[tuple[Phase, asyncio.Future[None]]] = []

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def reached(self) -> Phase:
        """The furthest start-up phase it got to: a worker stopping after READY was still READY."""
        return self._reached

    def move(self, to: Phase) -> bool:
        """Go to `to` if the table allows it from here; False (and nothing changes) if not."""
        if to not in MOVES[self._phase]:
            log.debug("%s phase %s: not moving to %s", self._describe(), self._phase.value, to.value)
            return False
        log.debug("%s phase %s -> %s", self._describe(), self._phase.value, to.value)
        self._phase = to
        if to in _STARTUP and _rank(to) > _rank(self._reached):
            self._reached = to
            for target, waiter in self._waiters:
                if _rank(target) <= _rank(to) and not waiter.done():
                    waiter.set_result(None)
        return True

    def fail(self, error: WorkerLoadError) -> None:
        """The start-up cannot reach READY any more; the first reason is the one told."""
        if self._reached is Phase.READY or self._failure is not None:
            return
        self._failure = error
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(error)
                waiter.exception()  # retrieved: its waiter may have been cancelled meanwhile

    async def reach(self, target: Phase) -> None:
        """Return once the start-up has reached `target`; raise its failure if it cannot."""
        assert target in _STARTUP, f"{target} is not a start-up phase"
        if _rank(self._reached) >= _rank(target):
            return
        if self._failure is not None:
            raise self._failure
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (target, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        finally:
            self._waiters.remove(entry)


def _rank(phase: Phase) -> int:
    return _STARTUP.index(phase)
