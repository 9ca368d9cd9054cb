"""One Wyoming (Home Assistant) connection: describe, transcribe, audio events.

A flat dispatch on typed events (`events.parse`), and the utterance being received kept
in one small dataclass that is replaced on every `transcribe`/`audio-start`. Audio goes
to the model through the same transcription service as an HTTP request (the same lease,
so it counts for the TTL and is never cut off by it); this module only speaks Wyoming.

Rules the bugs taught us:
- **Every refusal is an `error` event, then the close**, with one warning line in the log:
  a malformed event must not end in a traceback and a silent hang-up.
- **The next event is read while one is handled**, so a client that leaves mid-request
  (the connection's end arrives) cancels its request: the worker stops decoding and the
  model's lease is given back at once, not after a decode nobody will read.
- **Whatever a connection holds is released in `run`'s `finally`**: its connection slot,
  its share of the audio budget, its live session.
- **A server that stops lets the utterance being spoken finish** (`drain`): the
  connection closes at once if it is between utterances, else after the transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from wyoming.asr import Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.server import AsyncEventHandler

from common.protocol import TranscribeParams, TranscribeResult
from supervisor.failures import FailureKind, ServiceError
from supervisor.interfaces.wyoming.access import PeerGuard
from supervisor.interfaces.wyoming.events import (
    AudioBegins,
    AudioEnds,
    AudioFormat,
    ChunkIn,
    DescribeRequest,
    Refusal,
    TranscribeRequest,
    parse,
)
from supervisor.interfaces.wyoming.info import build_info
from supervisor.interfaces.wyoming.limits import WyomingLimits
from supervisor.interfaces.wyoming.reader import read_event
from supervisor.interfaces.wyoming.transcript_stream import TranscriptStream
from supervisor.service import TranscriptionService

log = logging.getLogger("asr.wyoming")

#: Wyoming error codes where they differ from the service's machine codes.
_CODES = {
    FailureKind.BAD_AUDIO: "bad_audio",
    FailureKind.BAD_PARAMETER: "bad_parameter",
    FailureKind.UNKNOWN_MODEL: "model_not_found",
}


def error_event(error: ServiceError) -> Event:
    return Error(text=error.message, code=_CODES.get(error.kind, error.code)).event()


@dataclass
class Utterance:
    """What the client has said so far in this request; a new one per transcribe/audio-start.

    Audio is kept in the client's own format and resampled by the worker with FFmpeg: the
    supervisor's event loop does no resampling, and FFmpeg's band-limited resampler keeps words
    that wyoming's linear converter loses at 22.05 kHz. It is one growing `bytearray`, not
    a list of chunks: a large buffer lives in its own mapping and goes back to the OS when
    freed, where thousands of 2 KB chunks fragment the heap and stay resident.
    """

    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    format: AudioFormat | None = None  # the first chunk's: every chunk must match it
    audio: bytearray = field(default_factory=bytearray)  # empty when decoded live
    size: int = 0  # bytes received, buffered here or sent to a live session


class WyomingHandler(AsyncEventHandler):
    def __init__(self, service: TranscriptionService, limits: WyomingLimits, guard: PeerGuard, *args: Any) -> None:
        super().__init__(*args)
        self._service = service
        self._limits = limits
        self._guard = guard
        self._allowance = limits.budget.allowance()
        self._peername: object = self.writer.get_extra_info("peername")
        self._utterance = Utterance()
        self._streaming = False  # the client asked with transcribe (HA ≥ 2025 streams transcripts)
        self._live: TranscriptStream | None = None  # this utterance, decoded while it is spoken
        self._in_utterance = False  # transcribe/audio-start/audio seen, its answer not yet written
        self._closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # set by `drain`

    @property
    def peer(self) -> str:
        if isinstance(self._peername, tuple) and len(self._peername) >= 2:
            return f"{self._peername[0]}:{self._peername[1]}"
        return "unix socket"

    async def run(self) -> None:
        """Serve the connection; never raises (the server's task would log a traceback)."""
        entered = False
        try:
            if not self._guard.allows(self._peername):
                raise Refusal("forbidden", f"{self.peer} is not in this server's wyoming_allow")
            self._limits.enter()
            entered = True
            await self._serve()
        except Refusal as refusal:
            log.warning("wyoming %s: %s; closing (%s)", self.peer, refusal.text, refusal.code)
            # A refused connection holds no slot: it must not linger long.
            await self._last_word(Error(text=refusal.text, code=refusal.code).event(), 5.0 if entered else 1.0)
        except (OSError, asyncio.IncompleteReadError):
            # The client went away mid-event: drop what it sent. A socket the peer has reset
            # can also fail with a plain OSError (ENOTCONN from shutdown), not a ConnectionError.
            pass
        except Exception as exc:
            log.error("wyoming %s: internal error (%s: %s); closing", self.peer, type(exc).__name__, exc)
            log.debug("wyoming %s: internal error", self.peer, exc_info=True)
            await self._last_word(Error(text="internal server error", code="internal_error").event(), 5.0)
        finally:
            await self._drop_live()
            self._replace_utterance(Utterance())
            self._allowance.close()
            if entered:
                self._limits.leave()
            self.writer.close()

    async def write_event(self, event: Event) -> None:
        """Write, or give up on a client that has read nothing for the idle timeout."""
        try:
            await asyncio.wait_for(super().write_event(event), self._limits.idle_timeout)
        except TimeoutError:
            self.writer.transport.abort()
            raise ConnectionAbortedError("the client reads nothing") from None

    def drain(self) -> None:
        """The server is stopping: close after the utterance in progress (now if none)."""
        if not self._closing.done():
            self._closing.set_result(None)

    async def _serve(self) -> None:
        """Read events, each while the previous one is handled (see the module's rules)."""
        reading = self._read_next()
        try:
            while True:
                if self._closing.done() and not self._in_utterance:
                    log.info("wyoming %s: closing, the server is stopping", self.peer)
                    return
                waits: set[asyncio.Future[Any]] = {reading} if self._closing.done() else {reading, self._closing}
                done, _ = await asyncio.wait(
                    waits, timeout=self._limits.idle_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    log.info("closing a Wyoming connection idle for %.0fs", self._limits.idle_timeout)
                    return
                if reading not in done:
                    continue  # `drain` was called: the loop's first test decides
                event = reading.result()  # raises the read's Refusal or ConnectionError
                if event is None:
                    return
                reading = self._read_next()
                if not await self._handle_unless_left(event, reading):
                    return
        finally:
            await _discard(reading)

    def _read_next(self) -> asyncio.Task[Event | None]:
        return asyncio.create_task(read_event(self.reader, self._allowance.hold))

    async def _handle_unless_left(self, event: Event, reading: asyncio.Task[Event | None]) -> bool:
        """Handle `event`; if the read of the next one ends without an event first (the client
        left, or sent garbage), cancel the handling. False: close the connection."""
        handling = asyncio.create_task(self.handle_event(event))
        try:
            await asyncio.wait({handling, reading}, return_when=asyncio.FIRST_COMPLETED)
            if not handling.done() and (reading.exception() is not None or reading.result() is None):
                log.info("wyoming %s: the client left mid-request; its request is cancelled", self.peer)
                return True  # the loop reads the end (or the read's error) and closes
            return await handling
        finally:
            await _discard(handling)
            self._allowance.release(len(event.payload or b""))

    async def handle_event(self, event: Event) -> bool:
        incoming = parse(event)
        if isinstance(incoming, DescribeRequest):
            await self.write_event(build_info(self._service.registry).event())
        elif isinstance(incoming, TranscribeRequest):
            self._in_utterance = True
            await self._drop_live()
            self._replace_utterance(Utterance(incoming.name, incoming.language, incoming.prompt))
            self._streaming = True
            # An unknown model is reported at audio-stop, where the client reads: closing
            # now would break the audio it is still writing.
        elif isinstance(incoming, AudioBegins):
            self._in_utterance = True
            await self._drop_live()
            previous = self._utterance
            self._replace_utterance(Utterance(previous.model, previous.language, previous.prompt))
        elif isinstance(incoming, ChunkIn):
            self._in_utterance = True
            await self._add_chunk(incoming)
        elif isinstance(incoming, AudioEnds):
            self._in_utterance = False  # the loop reads it once the answer below is written
            return await self._finish()
        return True  # None: events for other services (wake, tts...) are not ours: ignore

    async def _add_chunk(self, chunk: ChunkIn) -> None:
        utterance = self._utterance
        if not self._service.knows(utterance.model):
            return  # nothing will be transcribed: don't hold the audio
        first = utterance.format is None
        if first:
            utterance.format = chunk.format
        elif chunk.format != utterance.format:
            raise Refusal(
                "bad_audio", f"the audio format changed mid-utterance, from {utterance.format} to {chunk.format}"
            )
        if utterance.size + len(chunk.audio) > self._limits.max_utterance_bytes:
            raise Refusal("too_large", "utterance too long for this server (server.max_upload_mb)")
        if first:  # decode it live if we can
            self._live = await TranscriptStream.open(
                self._service,
                utterance.model,
                chunk.format,
                utterance.language,
                utterance.prompt,
                self.write_event,
                self._streaming,
            )
        utterance.size += len(chunk.audio)
        if self._live is not None:
            await self._live.add(chunk)
        else:
            self._allowance.hold(len(chunk.audio))
            utterance.audio += chunk.audio

    async def _finish(self) -> bool:
        utterance = self._utterance
        self._utterance = Utterance()
        held = len(utterance.audio)  # its budget is held until the copy sent to the worker is dropped
        try:
            return await self._answer(utterance)
        finally:
            self._allowance.release(held)

    async def _answer(self, utterance: Utterance) -> bool:
        try:
            self._service.resolve(utterance.model)
        except ServiceError as exc:
            await self.write_event(error_event(exc))
            return False
        if self._live is not None:
            return await self._finish_live(utterance)
        if not utterance.size or utterance.format is None:
            await self.write_event(Transcript(text="", language=utterance.language).event())
            return True
        audio = bytes(utterance.audio)
        utterance.audio.clear()
        fmt = utterance.format
        params = TranscribeParams(
            language=utterance.language or None,
            prompt=utterance.prompt,
            stream=self._streaming,
            audio_format="pcm",
            pcm_rate=fmt.rate,
            pcm_width=fmt.width,
            pcm_channels=fmt.channels,
        )
        try:
            result, streamed = await self._transcribe(utterance.model, audio, params)
        except ServiceError as exc:  # the connection stays open for the next utterance
            await self.write_event(error_event(exc))
            return True
        # Streaming order: transcript-start, transcript-chunk..., transcript, transcript-stop.
        await self.write_event(Transcript(text=result.text, language=result.language).event())
        if streamed:
            await self.write_event(TranscriptStop().event())
        return True

    async def _finish_live(self, utterance: Utterance) -> bool:
        live, self._live = self._live, None
        assert live is not None
        try:
            text = await live.finish()
        except ServiceError as exc:  # the connection stays open for the next utterance
            await self.write_event(error_event(exc))
            return True
        if self._streaming and not live.started:  # nothing was committed while it was spoken
            await self.write_event(TranscriptStart(language=utterance.language).event())
            await self.write_event(TranscriptChunk(text=text).event())
        await self.write_event(Transcript(text=text, language=utterance.language).event())
        if self._streaming:
            await self.write_event(TranscriptStop().event())
        return True

    def _replace_utterance(self, utterance: Utterance) -> None:
        """Start `utterance`, giving the previous one's buffered audio back (memory and budget)."""
        previous, self._utterance = self._utterance, utterance
        self._allowance.release(len(previous.audio))
        previous.audio.clear()

    async def _drop_live(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            await live.abort()

    async def _last_word(self, event: Event, linger: float) -> None:
        """Tell a client why it is being closed, if it still listens.

        A socket closed with unread input sends a reset, and a reset can destroy the error
        before the client reads it (it is usually still sending audio). So: the error, then
        our end of the stream, then its input discarded until it closes (a lingering close,
        as HTTP servers do), for at most `linger` seconds.
        """
        # OSError, not only ConnectionError: write_eof() on a socket the client has already
        # reset fails with ENOTCONN, which once escaped here as a logged traceback.
        with contextlib.suppress(OSError):  # ConnectionError and TimeoutError among them
            async with asyncio.timeout(linger):
                await super().write_event(event)
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                while await self.reader.read(64 * 1024):
                    pass

    async def _transcribe(
        self, model: str | None, audio: bytes, params: TranscribeParams
    ) -> tuple[TranscribeResult, bool]:
        """Relay segments as transcript chunks while the worker decodes; return the result."""
        streamed = False
        async with contextlib.aclosing(
            self._service.stream(model, audio, params, interface="wyoming")
        ) as transcription:
            async for item in transcription:
                if isinstance(item, TranscribeResult):
                    return item, streamed
                if not streamed:
                    await self.write_event(TranscriptStart(language=params.language).event())
                    streamed = True
                await self.write_event(TranscriptChunk(text=item.text).event())
        raise ServiceError(FailureKind.INTERNAL, "the worker sent no result", "transcription_failed")


async def _discard(task: asyncio.Task[Any]) -> None:
    """Cancel `task` if it runs, wait for it, and drop its outcome (so nothing logs it as lost)."""
    task.cancel()
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()
