"""The supervisor's side of one live session on a worker: send audio, commit, close; read events.

A `WorkerSession` is made by `WorkerProcess.open_session()`; the worker's channel
(`supervisor.workers.channel`) routes its SESSION_EVENT, SESSION_ACK, SESSION_ENDED and
ERROR messages for its id here. Iterating it yields the
session's `LiveEvent`s in order and stops after SESSION_ENDED; a session ERROR raises
`WorkerRequestError` (the worker has dropped the session), and the worker's death raises
`WorkerCrashed`. Leave it through `aclose()` or `async with`: a session left without a
close is aborted on the worker, so it frees its lane and its memory at once.

    async with await worker.open_session(params) as session:
        await session.send_audio(pcm)       # frames are numbered for the worker
        await session.close()               # final(s) for what was heard, then the end
        async for event in session: ...

Pace: at most `WINDOW_S` seconds of audio go out past the worker's last SESSION_ACK;
`send_audio` waits for room beyond that. The worker holds its acks back while the session
is too far ahead of its decoder, so a client that sends faster than the model transcribes
is slowed down to it, one awaited `send_audio` at a time (what its client sees then is the
interface's choice: `supervisor.live_stream`). The window also bounds what one session can queue
on the worker's socket, which every other request on the model shares.

Its state, one of `SessionState`, says what may still be sent and what is still read:

    state      audio, commit      close()      abort (close(abort=True), leaving)   events
    OPEN       sent               → CLOSING    → ABORTING                           queued
    CLOSING    dropped            -            → ABORTING                           queued
    ABORTING   dropped            -            -                                    queued
    ENDED      dropped            -            sent, → RELEASED                     ignored
    RELEASED   dropped            -            -                                    ignored
    GONE       WorkerCrashed      -            -                                    ignored

The worker ends it three ways: SESSION_ENDED or ERROR (→ RELEASED); a reply about it that
could not be read (→ ENDED: the worker may still hold it, so leaving aborts it there; →
RELEASED if an abort went out already); the worker's death (→ GONE from OPEN, so a caller
still sending hears of it; → RELEASED otherwise). The first of these queues the iterator's
end; ENDED, RELEASED and GONE are "over".
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from common.protocol import (
    LiveEvent,
    Payload,
    SessionAudio,
    SessionClose,
    SessionCommit,
    ToWorker,
)

log = logging.getLogger("asr.worker")

#: What the session's inbox carries: events, the end (None), or why it failed.
_Item = LiveEvent | BaseException | None


class SessionState(enum.Enum):
    OPEN = "open"  # audio and commits go to the worker
    CLOSING = "closing"  # a graceful close went out: the finals are on their way
    ABORTING = "aborting"  # an abort went out: the worker drops it at once
    ENDED = "ended"  # over here, perhaps not on the worker (a reply could not be read)
    RELEASED = "released"  # the worker holds it no more
    GONE = "gone"  # the worker died while the session was open


#: The states in which nothing more will come to the iterator.
_OVER = frozenset({SessionState.ENDED, SessionState.RELEASED, SessionState.GONE})

#: Seconds of audio sent and not yet acknowledged by the worker. Many of the worker's ack
#: steps (`worker.engine.sessions.ACK_STEP_S`, 0.5 s), so a session that keeps up never
#: waits, and silence (which the worker takes far faster than real time) streams without
#: stalls on a busy machine (a window of a few seconds made a flood of silence wait on every
#: ack round trip); still little
#: memory (320 KB at 16 kHz), and a few hundred milliseconds of the worker's loop at most
#: ahead of another request's message on the socket the model's clients share.
WINDOW_S = 10.0


class WorkerSession:
    """One live session: its id, its audio on the way in, its events on the way out."""

    def __init__(
        self,
        session_id: str,
        send: Callable[[ToWorker, Payload | None], Awaitable[None]],
        release: Callable[[WorkerSession], None],
        sample_rate: int = 16000,
    ) -> None:
        """`send` puts a message on the worker's socket (raising WorkerCrashed when it is gone);
        `release` tells the channel to stop routing this id here; `sample_rate` is the
        session's (s16le mono), which says how many bytes the window holds."""
        self.id = session_id
        self._send = send
        self._release = release
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._state = SessionState.OPEN
        self._seq = 0
        self._window_bytes = int(WINDOW_S * sample_rate) * 2
        self._unacked: deque[tuple[int, int]] = deque()  # (seq, bytes) sent, not acknowledged yet
        self._unacked_bytes = 0
        self._room = asyncio.Event()  # set when an ack, a close or the end may have made room

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def is_over(self) -> bool:
        """The worker is done with this session (ended, failed, or gone)."""
        return self._state in _OVER

    # -- to the worker ----------------------------------------------------------------

    async def send_audio(self, pcm: bytes) -> None:
        """The next frame: s16le mono PCM at the session's `params.sample_rate`, an even
        number of bytes, at most 1 MiB (else the session ends with a `bad_audio` error).

        Waits while `WINDOW_S` of audio is out unacknowledged (the worker is behind).
        Raises WorkerCrashed if the worker is gone. Once the session is closing or over,
        audio is dropped: the iterator says how it ended.
        """
        while self._unacked_bytes >= self._window_bytes and self._state is SessionState.OPEN:
            self._room.clear()
            await self._room.wait()
        if not self._sends():
            return
        seq = self._seq
        self._seq += 1
        self._unacked.append((seq, len(pcm)))
        self._unacked_bytes += len(pcm)
        await self._send(SessionAudio(id=self.id, seq=seq), pcm)

    async def commit(self, drop: bool = False) -> None:
        """End the current utterance now: its final is decoded next (ignored once closing or ended).
        With `drop`, the utterance and its audio are dropped instead: no final for it."""
        if self._sends():
            await self._send(SessionCommit(id=self.id, drop=drop), None)

    async def close(self, abort: bool = False) -> None:
        """No more audio. Without `abort`, the worker decodes the final(s) for what was heard,
        which the iterator yields before it stops; with `abort`, it drops the session at once.

        Returns at once (iterate for the rest). Closing twice is harmless; an abort after a
        graceful close cuts the final short.
        """
        match self._state, abort:
            case SessionState.OPEN, False:
                self._become(SessionState.CLOSING)
            case SessionState.OPEN | SessionState.CLOSING, True:
                self._become(SessionState.ABORTING)
            case SessionState.ENDED, True:
                self._become(SessionState.RELEASED)  # the abort frees what the worker may hold
            case _:
                return
        self._room.set()  # a frame waiting for room is dropped now
        await self._send(SessionClose(id=self.id, abort=abort), None)

    async def aclose(self) -> None:
        """Leave: abort the session on the worker unless it is already over, and stop listening."""
        try:
            await self.close(abort=True)
        except Exception:  # WorkerCrashed: the worker is gone, and the session with it
            log.debug("session %s: no abort on leaving: the worker is gone", self.id, exc_info=True)
        finally:
            self._release(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _sends(self) -> bool:
        """Whether audio and commits go out: while OPEN, and once GONE, to raise WorkerCrashed."""
        return self._state in (SessionState.OPEN, SessionState.GONE)

    # -- from the worker ----------------------------------------------------------------

    def __aiter__(self) -> WorkerSession:
        return self

    async def __anext__(self) -> LiveEvent:
        item = await self._inbox.get()
        if item is None or isinstance(item, BaseException):
            self._inbox.put_nowait(None)  # the end stays at the head: a later call stops at once
            if item is None:
                raise StopAsyncIteration
            raise item
        return item

    # Called by the channel (on the event loop) for messages about this id.

    def acknowledged(self, seq: int) -> None:
        """SESSION_ACK: the worker has taken the frames up to `seq`; room for more."""
        while self._unacked and self._unacked[0][0] <= seq:
            self._unacked_bytes -= self._unacked.popleft()[1]
        self._room.set()

    def deliver(self, event: LiveEvent) -> None:
        if self._state not in _OVER:
            self._inbox.put_nowait(event)

    def end(self, error: BaseException | None = None, *, released: bool = True, gone: bool = False) -> None:
        """The end of the events: SESSION_ENDED (no `error`), a session ERROR, or (`gone`) the
        worker's death. `released=False`: the worker may still hold the session (a reply that
        could not be read ended it here), so leaving still aborts it there."""
        self._room.set()  # no ack will come: a waiting frame goes (to WorkerCrashed) or is dropped
        was = self._state
        if was in (SessionState.RELEASED, SessionState.GONE):
            return
        if gone and was is SessionState.OPEN:
            self._become(SessionState.GONE)
        elif gone or released or was is SessionState.ABORTING:
            self._become(SessionState.RELEASED)
        else:
            self._become(SessionState.ENDED)
        if was is not SessionState.ENDED:
            self._inbox.put_nowait(error)

    def _become(self, state: SessionState) -> None:
        if state is self._state:
            return
        log.debug("session %s: %s -> %s", self.id, self._state.value, state.value)
        self._state = state
