"""Which live session decodes next on a free lane, and that decode, run there.

A session never queues decodes of its own: whenever a lane is free for live work, the
scheduler asks the sessions which one decodes next, so the job is cut from the newest audio
at that moment (a session that fell behind gets one partial over everything it has, never
a backlog of stale ones; its finals are never skipped). The rules:

- at most one job per session on a lane, except that a final may overtake the session's
  partial that is out: when the speaker pauses, the final starts on another lane at once
  (the engine offers nothing else while a job is out);
- finals first: sessions that may owe a final (an utterance ended, committed or closed, or
  a pause long enough for the speculative final) are asked before the others;
- partials round-robin: a session that gets a job goes to the back of the line;
- fair with file requests: the scheduler holds one place in the lanes' FIFO queue for each
  session that may want a decode (never more places than such sessions), so a file request
  waits for those already queued and no longer; a place that is granted when no session
  wants anything is given back at once.

The lanes are the worker's one pool of model copies, handed in by the server; file
requests (`worker.engine.transcriber`) queue on the same ones. The scheduler knows a
session by its `Seat` only: the engine it asks for jobs, what it may want (`Want`), and how
many of its jobs are out. What a decode gives back goes to the session table (`deliver`),
and so does a failure (`fail`), which ends that session only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from common.protocol import Segment
from worker.backends import Backend
from worker.engine.lanes import Lanes
from worker.engine.live import DecodeJob, LiveSession
from worker.engine.tally import Tally

log = logging.getLogger("worker")

#: How long a granted lane waits for the event loop to say which job it runs. The loop
#: answers at once; this only matters if the loop is gone (the process is ending).
_CHOOSE_TIMEOUT_S = 30.0

#: Runs a coroutine as one of the worker's tasks (its failure is fatal).
Start = Callable[[Coroutine[Any, Any, None], str], None]
#: A session's job decoded: (session id, the job, its segments).
Deliver = Callable[[str, DecodeJob, list[Segment]], None]
#: A session failed: (session id, what failed, the exception).
Fail = Callable[[str, str, Exception], None]


class Want(enum.Enum):
    """What a session may want from the lanes, as of the last change the scheduler heard of."""

    NOTHING = "nothing"  # it said it wants no decode, and nothing changed since
    DECODE = "decode"  # something changed: it may want one
    FINAL = "final"  # it may owe a final: it is asked before the others


@dataclass(eq=False)
class Seat:
    """One session, as the scheduler sees it."""

    id: str
    engine: LiveSession
    want: Want = Want.DECODE
    jobs_out: int = 0  # on lanes: one, or a partial and the final that overtook it
    left: bool = False  # the session is over: a job of its still on a lane is stopped, its result dropped

    @property
    def may_ask(self) -> bool:
        """Whether to ask it for a job: it may want one, and it has none out (or only a
        partial, which the final it may owe can overtake)."""
        return self.want is not Want.NOTHING and (
            self.jobs_out == 0 or (self.jobs_out == 1 and self.want is Want.FINAL)
        )


@dataclass(frozen=True, eq=False)
class _Decoded:
    """What a lane hands back: the job's segments, or what went wrong."""

    seat: Seat
    job: DecodeJob
    segments: list[Segment] | None
    error: Exception | None
    seconds: float


class LaneScheduler:
    def __init__(
        self, backend: Backend, lanes: Lanes, start: Start, tally: Tally, *, deliver: Deliver, fail: Fail
    ) -> None:
        """`start`, `deliver` and `fail` are called on the event loop only. `tally` gets the
        decodes' time, for the heartbeat."""
        self._backend = backend
        self._lanes = lanes
        self._start = start
        self._tally = tally
        self._deliver = deliver
        self._fail = fail
        self._seats: dict[str, Seat] = {}  # in round-robin order: whoever got a job moves to the end
        self._waiting = 0  # places held in the lanes' queue, not yet granted
        self.last_inference_at: float | None = None

    def seat(self, session_id: str, engine: LiveSession) -> Seat:
        """A newly opened session, at the back of the line."""
        seat = self._seats[session_id] = Seat(session_id, engine)
        return seat

    def unseat(self, seat: Seat) -> None:
        """The session is over: it is asked nothing more, and a job of its out is dropped."""
        seat.left = True
        if self._seats.get(seat.id) is seat:
            del self._seats[seat.id]

    @staticmethod
    def changed(seat: Seat, *, owes_final: bool) -> None:
        """The session took a step: it may want a decode now, and with `owes_final` a final."""
        if owes_final:
            seat.want = Want.FINAL
        elif seat.want is Want.NOTHING:
            seat.want = Want.DECODE

    def kick(self) -> None:
        """Hold one place in the lanes' queue for each session that may want a decode."""
        wanting = sum(1 for seat in self._seats.values() if seat.may_ask)
        while self._waiting < wanting:
            self._waiting += 1
            self._start(self._take_lane(), "live-decode")

    async def _take_lane(self) -> None:
        loop = asyncio.get_running_loop()
        decoded = await self._lanes.run(self._on_lane, loop)
        if decoded is not None:
            self._decoded(decoded)
        self.kick()

    def _on_lane(self, loop: asyncio.AbstractEventLoop, lane: int) -> _Decoded | None:
        """Runs on a granted lane's thread: ask the loop which job to run, then decode it here."""
        chosen: concurrent.futures.Future[tuple[Seat, DecodeJob] | None] = concurrent.futures.Future()
        loop.call_soon_threadsafe(self._choose, chosen)
        try:
            picked = chosen.result(timeout=_CHOOSE_TIMEOUT_S)
        except TimeoutError:
            if chosen.cancel():  # the loop never chose: nothing was taken
                return None
            picked = chosen.result()  # it is choosing right now
        if picked is None:
            return None
        seat, job = picked
        started = time.perf_counter()
        try:
            result = self._backend.transcribe(job.audio, job.params(), lambda _segment: not seat.left, lane)
        except Exception as exc:
            log.exception("session %s: decoding a %s job failed", seat.id, job.kind)
            return _Decoded(seat, job, None, exc, time.perf_counter() - started)
        finally:
            self.last_inference_at = time.time()  # a float store: safe from this thread
        return _Decoded(seat, job, result.segments, None, time.perf_counter() - started)

    def _choose(self, chosen: concurrent.futures.Future[tuple[Seat, DecodeJob] | None]) -> None:
        """On the loop, as a lane is granted: the next job, finals first, then round-robin."""
        self._waiting -= 1  # the place was granted, whether or not the lane still waits for a job
        if chosen.set_running_or_notify_cancel():
            try:
                chosen.set_result(self._next_job())
            except Exception as exc:  # a bug here: the lane's thread raises it, which ends the worker
                log.exception("choosing the next live job failed")
                chosen.set_exception(exc)
        self.kick()

    def _next_job(self) -> tuple[Seat, DecodeJob] | None:
        asking = [seat for seat in self._seats.values() if seat.may_ask]
        for seat in sorted(asking, key=lambda seat: seat.want is not Want.FINAL):  # stable: round-robin within each
            try:
                job = seat.engine.next_job()
            except Exception as exc:
                log.exception("session %s failed", seat.id)
                self._fail(seat.id, "the live session failed", exc)
                continue
            if job is None:
                seat.want = Want.NOTHING
                continue
            if job.kind == "partial":
                seat.want = Want.DECODE  # an engine offers its finals first: it owes none now
            seat.jobs_out += 1
            del self._seats[seat.id]  # to the back of the line
            self._seats[seat.id] = seat
            return seat, job
        return None

    def _decoded(self, decoded: _Decoded) -> None:
        seat, job = decoded.seat, decoded.job
        seat.jobs_out -= 1
        log.debug("session %s: %s job of %.2fs decoded in %.3fs", seat.id, job.kind, job.duration, decoded.seconds)
        if seat.left:
            return
        if decoded.error is not None:
            self._fail(seat.id, "decoding failed", decoded.error)
            return
        assert decoded.segments is not None
        self._deliver(seat.id, job, decoded.segments)
