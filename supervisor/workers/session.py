"""The supervisor's side of one live session on a worker: send audio, commit, close; read events.

A `WorkerSession` is made by `WorkerProcess.open_session()`, which routes the worker's
SESSION_EVENT, SESSION_ENDED and ERROR messages for its id here. Iterating it yields the
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
interface's choice: `supervisor.live`). The window also bounds what one session can queue
on the worker's socket, which every other request on the model shares.
"""

from __future__ import annotations

import asyncio
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

#: Seconds of audio sent and not yet acknowledged by the worker. Many of the worker's ack
#: steps (`worker.engine.sessions.ACK_STEP_S`, 0.5 s), so a session that keeps up never
#: waits, and silence (which the worker takes at ~100x real time) streams without stalls
#: on a busy machine (4 s took a 3-minute flood of silence twice as long); still little
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
        `release` tells the process to stop routing this id here; `sample_rate` is the
        session's (s16le mono), which says how many bytes the window holds."""
        self.id = session_id
        self._send = send
        self._release = release
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._seq = 0
        self._closing = False  # a close (graceful or abort) was sent: no more audio or commits
        self._aborted = False
        self._over = False  # nothing more will come to the iterator
        self._released = False  # the worker holds it no more (SESSION_ENDED, ERROR, or its death)
        self._gone = False  # the worker died
        self._exhausted = False  # the iterator has delivered the end
        self._window_bytes = int(WINDOW_S * sample_rate) * 2
        self._unacked: deque[tuple[int, int]] = deque()  # (seq, bytes) sent, not acknowledged yet
        self._unacked_bytes = 0
        self._room = asyncio.Event()  # set when an ack, a close or the end may have made room

    @property
    def is_over(self) -> bool:
        """The worker is done with this session (ended, failed, or gone)."""
        return self._over

    # -- to the worker ----------------------------------------------------------------

    async def send_audio(self, pcm: bytes) -> None:
        """The next frame: s16le mono PCM at the session's `params.sample_rate`, an even
        number of bytes, at most 1 MiB (else the session ends with a `bad_audio` error).

        Waits while `WINDOW_S` of audio is out unacknowledged (the worker is behind).
        Raises WorkerCrashed if the worker is gone. Once the session is closing or over,
        audio is dropped: the iterator says how it ended.
        """
        while self._unacked_bytes >= self._window_bytes and not (self._closing or self._over):
            self._room.clear()
            await self._room.wait()
        if self._closing or (self._over and not self._gone):
            return
        seq = self._seq
        self._seq += 1
        self._unacked.append((seq, len(pcm)))
        self._unacked_bytes += len(pcm)
        await self._send(SessionAudio(id=self.id, seq=seq), pcm)

    async def commit(self, drop: bool = False) -> None:
        """End the current utterance now: its final is decoded next (ignored once closing or ended).
        With `drop`, the utterance and its audio are dropped instead: no final for it."""
        if self._closing or (self._over and not self._gone):
            return
        await self._send(SessionCommit(id=self.id, drop=drop), None)

    async def close(self, abort: bool = False) -> None:
        """No more audio. Without `abort`, the worker decodes the final(s) for what was heard,
        which the iterator yields before it stops; with `abort`, it drops the session at once.

        Returns at once (iterate for the rest). Closing twice is harmless; an abort after a
        graceful close cuts the final short.
        """
        if self._released or self._aborted or (self._closing and not abort):
            return
        self._closing = True
        self._aborted = abort
        self._room.set()  # a frame waiting for room is dropped now
        await self._send(SessionClose(id=self.id, abort=abort), None)

    async def aclose(self) -> None:
        """Leave: abort the session on the worker unless it is already over, and stop listening."""
        try:
            if not self._released and not self._aborted:
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

    # -- from the worker ----------------------------------------------------------------

    def __aiter__(self) -> WorkerSession:
        return self

    async def __anext__(self) -> LiveEvent:
        if self._exhausted:
            raise StopAsyncIteration
        item = await self._inbox.get()
        if item is None:
            self._exhausted = True
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._exhausted = True
            raise item
        return item

    # Called by the WorkerProcess (on the event loop) for messages about this id.

    def acknowledged(self, seq: int) -> None:
        """SESSION_ACK: the worker has taken the frames up to `seq`; room for more."""
        while self._unacked and self._unacked[0][0] <= seq:
            self._unacked_bytes -= self._unacked.popleft()[1]
        self._room.set()

    def deliver(self, event: LiveEvent) -> None:
        if not self._over:
            self._inbox.put_nowait(event)

    def end(self, error: BaseException | None = None, *, released: bool = True, gone: bool = False) -> None:
        """The end of the events: SESSION_ENDED (no `error`), a session ERROR, or (`gone`) the
        worker's death. `released=False`: the worker may still hold the session (a reply that
        could not be read ended it here), so leaving still aborts it there."""
        self._released = self._released or released or gone
        self._gone = self._gone or gone
        self._room.set()  # no ack will come: a waiting frame goes (to WorkerCrashed) or is dropped
        if self._over:
            return
        self._over = True
        self._inbox.put_nowait(error)
