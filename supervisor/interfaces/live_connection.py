"""The live connection loop, written once for every interface that streams a `LiveStream`.

Two parts:
- `StreamRelay` (the live WebSocket, Realtime and Wyoming): carries the stream's events to
  the client through the interface's `render`, and notices when the model is wanted back
  (unload, eviction, shutdown): once the speaker has had `session_drain_timeout` seconds, it
  calls the interface's `wound_down`, which ends the stream in the interface's own terms.
- `LiveConnection` (the two WebSocket interfaces): a client's messages received under
  `session_idle_timeout`, its audio counted against `max_session_seconds`, the stream's end
  (idle, length limit, wind-down, the client's own end: the last finals first, then the
  close) and the close code for whatever went wrong.

Each interface keeps only its wire: the live WebSocket (`http/live_websocket.py`) and
Realtime (`http/realtime.py`) subclass `LiveConnection` with how to greet, how to read one
client message and how to render an event or an error; Wyoming (`wyoming/transcript_stream.py`)
gives a `StreamRelay` its rendering as transcript chunks, inside its own connection's event
loop, which serves whole utterances and `describe` as well.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, ClassVar

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from common.protocol.live import LiveEvent, LiveParams
from supervisor.config import Settings
from supervisor.failures import FailureKind, ServiceError
from supervisor.live_stream import LiveStream
from supervisor.observe import Interface
from supervisor.service import TranscriptionService

#: Audio is passed to the stream in pieces of at most this many bytes (a Realtime append may
#: carry seconds of it; a live WebSocket frame is never larger).
PIECE_BYTES = 256 * 1024

_CLOSE_FOR_KIND = {
    FailureKind.BAD_AUDIO: 1003,
    FailureKind.BAD_PARAMETER: 1008,
    FailureKind.TOO_LARGE: 1009,
    FailureKind.UNKNOWN_MODEL: 1008,
    FailureKind.UNAVAILABLE: 1013,
    FailureKind.CRASHED: 1011,
    FailureKind.INTERNAL: 1011,
}


class Close(Exception):
    """How a connection ends: a close code and, unless it is a normal end, the error sent first."""

    def __init__(self, code: int, error: str | None = None, message: str = "") -> None:
        super().__init__(message or error or str(code))
        self.code = code
        self.error = error
        self.message = message

    @classmethod
    def for_failure(cls, exc: ServiceError) -> Close:
        return cls(_CLOSE_FOR_KIND[exc.kind], exc.code, exc.message)


class StreamRelay:
    """A live stream's events carried to one client, and its model's wind-down noticed.

    `render` puts one event on the wire; a `ServiceError` from the stream ends the relay and
    is kept in `failure` (after `failed`, if given, has told the client). `wound_down` runs
    once the model is wanted back and the speaker's drain time is over. The stream may be
    attached after `start` (Realtime leases its model at the first audio): both tasks wait
    for it.
    """

    def __init__(
        self,
        render: Callable[[LiveEvent], Awaitable[None]],
        wound_down: Callable[[], Awaitable[None]],
        failed: Callable[[ServiceError], Awaitable[None]] | None = None,
    ) -> None:
        self.stream: LiveStream | None = None
        self.failure: ServiceError | None = None
        self._render = render
        self._wound_down = wound_down
        self._failed = failed
        self._attached = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def attach(self, stream: LiveStream) -> None:
        self.stream = stream
        self._attached.set()

    def start(self) -> asyncio.Task[None]:
        """Start relaying and watching; returns the relay's task, which ends after the last event."""
        self._tasks = [asyncio.create_task(self._relay()), asyncio.create_task(self._watch_wind_down())]
        return self._tasks[0]

    async def stop(self) -> None:
        """Cancel both tasks and drop their outcomes (the connection is ending)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self) -> None:
        stream = await self._stream()
        try:
            async for event in stream:
                await self._render(event)
        except ServiceError as exc:
            self.failure = exc
            if self._failed is not None:
                await self._failed(exc)

    async def _watch_wind_down(self) -> None:
        await (await self._stream()).wanted_back()
        await self._wound_down()

    async def _stream(self) -> LiveStream:
        await self._attached.wait()
        assert self.stream is not None
        return self.stream


class LiveConnection(ABC):
    """One client's live session over a WebSocket: the loop, with a subclass per protocol.

    A subclass says how to greet (`start`: check the request, perhaps open the stream), how
    to take one client message (`handle`), how to render an engine event (`render`) and an
    error (`send_error`); it opens the stream with `open_stream` and passes audio on with
    `queue_audio`. Everything else (the idle timeout, the length limit, the wind-down, the
    finals before the close, the close code of a failure) happens here, the same for all.
    """

    #: What the protocol's messages call a session ("a live session may last 3600 s") and
    #: what the idle timeout waits for ("no audio for 30 s").
    SESSION: ClassVar[str] = "live"
    ACTIVITY: ClassVar[str] = "audio"

    def __init__(self, websocket: WebSocket, service: TranscriptionService, settings: Settings) -> None:
        self._ws = websocket
        self._service = service
        self._settings = settings
        self._stack = contextlib.AsyncExitStack()  # the stream's lease, once it is opened
        self._relay = StreamRelay(self.render, self._wound_down, self.failed)
        self._seconds = 0.0  # of audio received
        self._ending: Close | None = None  # how to close once the last final is out

    @property
    def stream(self) -> LiveStream | None:
        return self._relay.stream

    async def run(self) -> None:
        try:
            async with self._stack:
                await self.start()
                await self._serve()
        except Close as close:
            await self._close(close)
        except ServiceError as exc:
            await self._close(Close.for_failure(exc))
        except (WebSocketDisconnect, OSError):  # uvicorn's ClientDisconnected is an OSError
            pass  # the client went away: the stream was aborted on the way out

    # -- what each protocol brings ------------------------------------------------------------

    @abstractmethod
    async def start(self) -> None:
        """Check the request (`Close` to refuse it) and greet the client."""

    @abstractmethod
    async def handle(self, message: MutableMapping[str, Any]) -> bool:
        """One client message (an ASGI `websocket.receive`); True once the session is finishing."""

    @abstractmethod
    async def render(self, event: LiveEvent) -> None:
        """Send one engine event in the protocol's format."""

    @abstractmethod
    async def send_error(self, code: str, message: str) -> None:
        """Send an error in the protocol's format (before a close that is not a normal end)."""

    async def failed(self, failure: ServiceError) -> None:
        """The stream failed: tell the client what it loses, before the error and the close."""

    # -- what they call -----------------------------------------------------------------------

    async def open_stream(self, model: str | None, params: LiveParams, interface: Interface) -> LiveStream:
        """Lease `model` for a live stream, held until the connection ends."""
        stream = await self._stack.enter_async_context(self._service.live(model, params, interface=interface))
        self._relay.attach(stream)
        return stream

    async def queue_audio(self, pcm: bytes) -> bool:
        """Pass the client's audio on (never waiting: see `LiveStream.queue_audio`); True when
        it takes the session past `max_session_seconds`, which then finishes instead."""
        stream = self.stream
        assert stream is not None, "open_stream() first"
        self._seconds += len(pcm) / (2 * stream.params.sample_rate)
        limit = self._settings.server.max_session_seconds
        if self._seconds > limit:
            await self.finish(Close(1008, "session_too_long", f"a {self.SESSION} session may last {limit:g} s"))
            return True
        # An empty frame goes too: like any audio, it opens the worker's session.
        for at in range(0, max(len(pcm), 1), PIECE_BYTES):
            await stream.queue_audio(pcm[at : at + PIECE_BYTES])
        return False

    async def finish(self, ending: Close) -> bool:
        """End the stream: its last finals go out, then the connection closes with `ending`
        (the first ending asked for wins). False when no stream was opened."""
        if self.stream is None:
            return False
        if self._ending is None:
            self._ending = ending
        await self.stream.finish()
        return True

    # -- the loop -----------------------------------------------------------------------------

    async def _serve(self) -> None:
        relay = self._relay.start()
        receiver = asyncio.create_task(self._receive())
        try:
            done, _ = await asyncio.wait({relay, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done and receiver.result() == "disconnected":
                return
            await relay  # the last final(s), then the stream's end
            if self._relay.failure is not None:
                raise self._relay.failure
            await self._close(self._ending or Close(1000))
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
            await self._relay.stop()

    async def _receive(self) -> str:
        """Take the client's messages until it goes away ("disconnected") or the session ends ("finishing")."""
        idle = self._settings.server.session_idle_timeout
        while True:
            try:
                async with asyncio.timeout(idle):
                    message = await self._ws.receive()
            except TimeoutError:
                ending = Close(1000, "idle_timeout", f"no {self.ACTIVITY} for {idle:g} s: the session ended")
                if await self.finish(ending):
                    return "finishing"
                raise ending from None
            if message["type"] == "websocket.disconnect":
                return "disconnected"
            if await self.handle(message):
                return "finishing"

    async def _wound_down(self) -> None:
        """The model is wanted back and the speaker has had its drain time: end with the finals."""
        assert self.stream is not None
        await self.finish(Close(1012, "model_unloading", f"model {self.stream.model!r} is being unloaded"))

    async def _close(self, close: Close) -> None:
        if self._ws.client_state is not WebSocketState.CONNECTED:
            return
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            if close.error is not None:
                await self.send_error(close.error, close.message)
            await self._ws.close(close.code)
