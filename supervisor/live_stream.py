"""One live stream on a model, as the interfaces see it (WebSocket, Wyoming)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Self

from common.protocol.live import LiveEvent, LiveParams
from supervisor.failures import FailureKind, ServiceError, classify
from supervisor.models.owner import ModelOwner, ModelUnavailable
from supervisor.workers.process import WorkerError, WorkerProcess
from supervisor.workers.session import WorkerSession

log = logging.getLogger("asr.live")

#: Seconds of audio `queue_audio` holds for a client that is ahead of the model (beyond
#: the few seconds on their way to the worker). A real-time client never comes near it; a
#: network hiccup's burst fits; a client replaying a recording much faster than the model
#: transcribes it is refused once it is this far ahead.
MAX_AHEAD_S = 30.0


def beyond(said: str, text: str) -> str | None:
    """What `text` adds after `said`, the words a client was already sent: "" when it adds
    nothing, None when it does not begin with them. The engine never retracts a committed
    word and begins every final with them, so None is a bug to report, never a retraction
    to send. Realtime's deltas and Wyoming's transcript chunks are built with it."""
    return text[len(said) :] if text.startswith(said) else None


class LiveStream:
    """One live stream on a model, from its first frame to its last final.

    It holds the model's lease for its whole life, so the TTL cannot end a worker under
    someone who is speaking. When the worker is wanted back (unload, eviction, shutdown),
    `wind_down` is set: the interface gives the speaker `session_drain_timeout` seconds,
    then calls `finish()` for a final of what was heard and ends the stream. Parameters may
    change (`configure`) until the first audio, because the worker's session opens then.
    Failures surface as `ServiceError`.

    Audio faster than the model takes it, two ways (the worker acknowledges what it has
    taken, and holds its acks back while the session's finals are behind; see
    `supervisor.workers.session`):
    - `send_audio` waits until the worker has room: the caller stops reading its client, and
      TCP slows the client down. Nothing is lost. For Wyoming, which has no keepalive.
    - `queue_audio` never waits: it holds up to `MAX_AHEAD_S` of audio for the worker and
      refuses more (`audio_too_fast`). For the WebSocket, whose client would otherwise see
      its pings unanswered behind megabytes of audio in the kernel's buffers and give up.
    Either way the worker's memory and its event loop are bounded per session, whatever
    the client sends, and everyone else on the model is served meanwhile.
    """

    def __init__(
        self,
        owner: ModelOwner,
        params: LiveParams,
        on_close: Callable[[LiveStream], None] | None = None,
        drain_seconds: float = 0.0,
    ) -> None:
        self.model = owner.spec.name
        self.params = params
        self.pid: int | None = None
        self.wind_down = asyncio.Event()  # replaced by the lease's own notice on open()
        # What the service's "request finished" record says of it (`supervisor.observe`).
        self.leased_at: float | None = None  # time.monotonic() its model's worker was leased
        self.audio_seconds = 0.0  # of audio sent or queued for the worker
        self.failure: ServiceError | None = None  # the first failure it raised
        self._owner = owner
        self._stack = contextlib.AsyncExitStack()
        self._worker: WorkerProcess | None = None
        self._session: WorkerSession | None = None
        self._session_open = asyncio.Event()  # events are read only once the first audio opened it
        self._on_close = on_close
        self._drain_seconds = drain_seconds
        self._held: deque[bytes] = deque()  # queue_audio's audio, not yet sent to the worker
        self._held_bytes = 0
        self._held_changed = asyncio.Event()  # audio held, or all of it sent
        self._pump: asyncio.Task[None] | None = None  # sends the held audio, paced by the worker
        self._pump_failure: ServiceError | None = None

    async def open(self) -> None:
        """Lease the model (starting its worker if need be)."""
        try:
            lease = await self._stack.enter_async_context(self._owner.lease())
        except ModelUnavailable as exc:
            raise self._failed(classify(exc)) from None
        self._worker, self.pid, self.wind_down = lease.worker, lease.worker.pid, lease.wind_down
        self.leased_at = time.monotonic()

    async def wanted_back(self) -> None:
        """Return once the model is wanted back (unload, eviction, shutdown) and the speaker has
        had its `session_drain_timeout` seconds: the interface then finishes the stream."""
        await self.wind_down.wait()
        await asyncio.sleep(self._drain_seconds)

    def configure(self, params: LiveParams) -> bool:
        """New parameters, if the worker's session has not opened yet; False if too late."""
        if self._session is not None:
            return False
        self.params = params
        return True

    async def send_audio(self, pcm: bytes) -> None:
        """The next frame (s16le mono PCM); returns once the worker has room for it."""
        session = await self._sendable()
        await self._guarded(session.send_audio(pcm))
        self.audio_seconds += len(pcm) / (2 * self.params.sample_rate)

    async def queue_audio(self, pcm: bytes) -> None:
        """The next frame, without waiting: it is held until the worker has room. ServiceError
        (`audio_too_fast`) once more than `MAX_AHEAD_S` of audio would be held."""
        session = await self._opened()
        if self._pump_failure is not None:
            raise self._failed(self._pump_failure)
        limit = int(MAX_AHEAD_S * self.params.sample_rate) * 2
        if self._held_bytes + len(pcm) > limit:
            raise self._failed(
                ServiceError(
                    FailureKind.BAD_PARAMETER,
                    f"audio arrives faster than model {self.model!r} transcribes it: the session is more than "
                    f"{MAX_AHEAD_S:g} s of audio ahead. Send audio in real time (or transcribe a recording "
                    "with POST /v1/audio/transcriptions).",
                    "audio_too_fast",
                )
            )
        self.audio_seconds += len(pcm) / (2 * self.params.sample_rate)
        self._held.append(pcm)
        self._held_bytes += len(pcm)
        self._held_changed.set()
        if self._pump is None:
            self._pump = asyncio.create_task(self._send_held(session), name=f"live-pump-{session.id}")

    async def commit(self) -> None:
        await self._guarded((await self._sendable()).commit())

    async def clear(self) -> None:
        """Drop the utterance being heard and its audio (no final for it)."""
        await self._guarded((await self._sendable()).commit(drop=True))

    async def finish(self) -> None:
        """No more audio: the remaining final(s) come, then the events end."""
        await self._guarded((await self._sendable()).close())

    def __aiter__(self) -> LiveStream:
        return self

    async def __anext__(self) -> LiveEvent:
        await self._session_open.wait()
        assert self._session is not None
        try:
            return await anext(self._session)
        except WorkerError as exc:
            raise self._failed(classify(exc)) from None

    async def aclose(self) -> None:
        """Drop the stream (abort the worker's session if it is still on) and give the lease back."""
        try:
            if self._pump is not None:
                self._pump.cancel()
                await asyncio.gather(self._pump, return_exceptions=True)
            if self._session is not None:
                await self._session.aclose()
            await self._stack.aclose()
        finally:
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close(self)

    async def __aenter__(self) -> Self:
        try:
            await self.open()
        except BaseException:
            await self.aclose()  # `async with` calls no __aexit__ when __aenter__ fails
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _opened(self) -> WorkerSession:
        if self._session is None:
            assert self._worker is not None, "open() first"
            try:
                self._session = await self._worker.open_session(self.params)
            except WorkerError as exc:
                raise self._failed(classify(exc)) from None
            self._session_open.set()
        return self._session

    async def _sendable(self) -> WorkerSession:
        """The session, once the audio held for it is sent: what follows goes in order."""
        session = await self._opened()
        while self._held and self._pump_failure is None:
            self._held_changed.clear()
            await self._held_changed.wait()
        if self._pump_failure is not None:
            raise self._failed(self._pump_failure)
        return session

    async def _send_held(self, session: WorkerSession) -> None:
        """Send the held audio in order, each frame once the worker has room for it. If that
        fails, the held audio is dropped and the failure is what the next call raises."""
        try:
            while True:
                while not self._held:
                    self._held_changed.clear()
                    await self._held_changed.wait()
                pcm = self._held[0]
                await session.send_audio(pcm)
                self._held.popleft()
                self._held_bytes -= len(pcm)
                if not self._held:
                    self._held_changed.set()
        except WorkerError as exc:
            self._pump_failure = classify(exc)
        except Exception as exc:  # a bug: fail the stream rather than leave finish() waiting
            log.exception("live stream on %s: sending its audio failed", self.model)
            self._pump_failure = ServiceError(FailureKind.INTERNAL, f"the live stream failed: {exc}", "internal_error")
        self._held.clear()
        self._held_bytes = 0
        self._held_changed.set()

    async def _guarded(self, call: Awaitable[None]) -> None:
        try:
            await call
        except WorkerError as exc:
            raise self._failed(classify(exc)) from None

    def _failed(self, failure: ServiceError) -> ServiceError:
        """Remember the stream's first failure (for its record) and return it, to be raised."""
        if self.failure is None:
            self.failure = failure
        return failure
