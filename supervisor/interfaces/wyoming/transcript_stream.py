"""A Wyoming utterance decoded while it is spoken.

Home Assistant's satellites send audio in real time until their own end of speech, then
`audio-stop`. Waiting for `audio-stop` to start decoding (what wyoming-faster-whisper does)
puts the whole decode after the user has finished. Here each chunk goes to a live stream
as it arrives, newly committed words go back at once as `transcript-chunk` events (they
are never retracted: each final begins with its committed words, and the rest of it follows
as one more chunk, so the chunks joined are the `transcript`), and `audio-stop` waits only
for the final, which the engine has usually decoded already, speculatively, during the
trailing silence. The relay of the stream's events and the notice of its model's wind-down
are the live connection loop's (`supervisor.interfaces.live_connection.StreamRelay`); this
module renders them in Wyoming's terms.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import msgspec
from wyoming.asr import TranscriptChunk, TranscriptStart
from wyoming.audio import AudioChunk, AudioChunkConverter
from wyoming.event import Event

from common.protocol.live import Final, LiveEvent, LiveParams, Partial
from supervisor.failures import FailureKind, ServiceError
from supervisor.interfaces.live_connection import StreamRelay
from supervisor.interfaces.wyoming.events import AudioFormat, ChunkIn
from supervisor.live_stream import LiveStream, beyond
from supervisor.service import TranscriptionService

WriteEvent = Callable[[Event], Awaitable[None]]


class TranscriptStream:
    """One Wyoming utterance on a live stream: its committed words go out as `transcript-chunk`
    events while it is spoken, its finals are kept for the `transcript` at `audio-stop`."""

    def __init__(self, stream: LiveStream, write: WriteEvent, send_chunks: bool, language: str | None) -> None:
        self._stream = stream
        self._write = write
        self._send_chunks = send_chunks  # the client asked with `transcribe`: it reads transcript-chunk events
        self._language = language
        self._to_16_bit_mono = AudioChunkConverter(rate=None, width=2, channels=1)  # the worker resamples
        self._finals: list[str] = []
        self._sent = ""  # the current engine utterance's committed text already sent as chunks
        self.started = False  # transcript-start sent
        self._audio_failure: ServiceError | None = None  # sending the audio failed
        self._relay = StreamRelay(self._render, self._give_back)
        self._relay.attach(stream)
        self._relaying = self._relay.start()

    @classmethod
    async def open(
        cls,
        service: TranscriptionService,
        model: str | None,
        fmt: AudioFormat,
        language: str | None,
        prompt: str | None,
        write: WriteEvent,
        send_chunks: bool,
    ) -> TranscriptStream | None:
        """A live utterance in format `fmt`, or None when this one must be decoded whole at
        `audio-stop` (a rate outside 8-48 kHz, more than two channels, a backend that cannot
        stream, no session free)."""
        if fmt.channels > 2:  # wyoming's converter mixes stereo only; the worker mixes any count
            return None
        try:
            params = msgspec.convert({"language": language, "prompt": prompt, "sample_rate": fmt.rate}, LiveParams)
        except msgspec.ValidationError:  # a rate outside what live sessions take
            return None
        try:
            stream = service.live(model, params, interface="wyoming")
        except ServiceError:
            return None
        try:
            await stream.__aenter__()
        except ServiceError:
            return None  # __aenter__ has released what it took; the whole-utterance path reports the error
        return cls(stream, write, send_chunks, language)

    @property
    def _failure(self) -> ServiceError | None:
        """What failed: the stream's events (the relay) if they did, else the audio sent to it."""
        return self._relay.failure or self._audio_failure

    async def add(self, chunk: ChunkIn) -> None:
        if self._failure is None:
            fmt = chunk.format
            pcm = self._to_16_bit_mono.convert(AudioChunk(fmt.rate, fmt.width, fmt.channels, chunk.audio)).audio
            try:
                await self._stream.send_audio(pcm)
            except ServiceError as exc:
                self._audio_failure = exc

    async def finish(self) -> str:
        """The utterance's text, once its last final is in; ServiceError if it failed."""
        try:
            if self._failure is None:
                await self._stream.finish()
            await self._relaying
        finally:
            await self._relay.stop()
            await self._stream.aclose()
        if self._failure is not None:
            raise self._failure
        return " ".join(self._finals)

    async def abort(self) -> None:
        await self._relay.stop()  # a relay that failed before the abort: the connection is ending anyway
        await self._stream.aclose()

    async def _give_back(self) -> None:
        """The model is wanted back (unload, eviction, shutdown) and the client has not said
        audio-stop within `session_drain_timeout`: finish what was heard now and give the model back;
        the text is kept for the audio-stop (or the connection's end) that follows."""
        if self._failure is None:
            with contextlib.suppress(ServiceError):
                await self._stream.finish()
        await asyncio.wait({self._relaying})
        await self._stream.aclose()

    async def _render(self, event: LiveEvent) -> None:
        try:
            if isinstance(event, Partial) and self._send_chunks:
                await self._send_committed(event.committed)
            elif isinstance(event, Final):
                text = event.text.strip()
                if self._send_chunks and self.started and text:
                    await self._send_committed(text)  # the rest of it, after what was committed
                if text:
                    self._finals.append(text)
                self._sent = ""
        except ConnectionError:  # ends the relay: the failure is what `finish` raises
            raise ServiceError(FailureKind.INTERNAL, "the client went away", "client_gone") from None

    async def _send_committed(self, committed: str) -> None:
        if not (new := beyond(self._sent, committed)):
            return
        self._sent = committed
        if self._finals and len(new) == len(committed):
            new = " " + new  # a later engine utterance: the transcript joins them with a space
        if not self.started:
            new = " ".join(self._finals) + new  # finals that came before any chunk go first
            self.started = True
            await self._write(TranscriptStart(language=self._language).event())
        await self._write(TranscriptChunk(text=new).event())
