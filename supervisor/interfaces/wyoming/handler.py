"""One Wyoming (Home Assistant) connection: describe, transcribe, audio events.

A flat dispatch on event type, and the utterance being received kept in one small
dataclass that is replaced on every `transcribe`/`audio-start`. Audio goes to the model
through the same transcription service as an HTTP request (the same lease, so it counts
for the TTL and is never cut off by it); this module only speaks Wyoming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.server import AsyncEventHandler

from supervisor.failures import FailureKind, ServiceError
from supervisor.interfaces.wyoming.info import build_info
from supervisor.interfaces.wyoming.live import LiveUtterance
from supervisor.interfaces.wyoming.reader import read_event
from supervisor.service import TranscriptionService
from worker.protocol import TranscribeParams, TranscribeResult

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

    Audio is kept in the client's own format (rate, width, channels) and resampled by the
    worker with FFmpeg: the supervisor's event loop does no DSP, and FFmpeg's band-limited
    resampler keeps words that wyoming's linear converter loses at 22.05 kHz.
    """

    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    chunks: list[bytes] = field(default_factory=list)  # joined once at audio-stop: no quadratic copying
    size: int = 0
    converter: AudioChunkConverter | None = None  # set by the first chunk: the utterance's format

    def add(self, chunk: AudioChunk) -> bytes:
        if self.converter is None:
            self.converter = AudioChunkConverter(rate=chunk.rate, width=chunk.width, channels=chunk.channels)
        audio = self.converter.convert(chunk).audio  # a no-op unless a client changes format mid-stream
        self.chunks.append(audio)
        self.size += len(audio)
        return audio


class WyomingHandler(AsyncEventHandler):
    def __init__(self, service: TranscriptionService, max_audio_bytes: int, idle_timeout: float, *args: Any) -> None:
        super().__init__(*args)
        self._service = service
        self._max_audio_bytes = max_audio_bytes
        self._idle_timeout = idle_timeout
        self._utterance = Utterance()
        self._streaming = False  # the client asked with transcribe (HA ≥ 2025 streams transcripts)
        self._live: LiveUtterance | None = None  # this utterance, decoded while it is spoken

    async def run(self) -> None:
        """The base loop, with a reader that refuses oversized events instead of buffering them,
        and closes connections that stay silent longer than the idle timeout."""
        try:
            while (event := await asyncio.wait_for(read_event(self.reader), self._idle_timeout)) is not None:
                if not await self.handle_event(event):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-event: drop what it sent
        except TimeoutError:
            log.info("closing a Wyoming connection idle for %.0fs", self._idle_timeout)
        finally:
            await self._drop_live()
            self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(build_info(self._service.registry).event())
            return True
        if Transcribe.is_type(event.type):
            transcribe = Transcribe.from_event(event)
            prompt = transcribe.context.get("prompt") if isinstance(transcribe.context, dict) else None
            await self._drop_live()
            self._utterance = Utterance(model=transcribe.name, language=transcribe.language, prompt=prompt)
            self._streaming = True
            # An unknown model is reported at audio-stop, where the client reads: closing
            # now would break the audio it is still writing.
            return True
        if AudioStart.is_type(event.type):
            await self._drop_live()
            previous = self._utterance
            self._utterance = Utterance(model=previous.model, language=previous.language, prompt=previous.prompt)
            return True
        if AudioChunk.is_type(event.type):
            return await self._add_chunk(AudioChunk.from_event(event))
        if AudioStop.is_type(event.type):
            return await self._finish()
        return True  # events for other services (wake, tts...) are not ours: ignore

    async def _add_chunk(self, chunk: AudioChunk) -> bool:
        utterance = self._utterance
        if not self._service.knows(utterance.model):
            return True  # nothing will be transcribed: don't hold the audio
        if self._live is None and not utterance.size:  # its first chunk: decode it live if we can
            self._live = await LiveUtterance.open(
                self._service,
                utterance.model,
                chunk,
                utterance.language,
                utterance.prompt,
                self.write_event,
                self._streaming,
            )
        try:
            if self._live is not None:
                utterance.size += len(chunk.audio)
                await self._live.add(chunk)
            else:
                utterance.add(chunk)
        except (ValueError, TypeError) as exc:  # audioop rejects impossible widths and lengths
            await self.write_event(Error(text=f"bad audio chunk: {exc}", code="bad_audio").event())
            return False
        if self._utterance.size > self._max_audio_bytes:
            await self.write_event(Error(text="utterance too long for this server", code="too_large").event())
            return False
        return True

    async def _finish(self) -> bool:
        utterance, self._utterance = self._utterance, Utterance()
        try:
            self._service.resolve(utterance.model)
        except ServiceError as exc:
            await self.write_event(error_event(exc))
            return False
        if self._live is not None:
            return await self._finish_live(utterance)
        if not utterance.size:
            await self.write_event(Transcript(text="", language=utterance.language).event())
            return True
        audio = b"".join(utterance.chunks)
        fmt = utterance.converter
        assert fmt is not None and fmt.rate and fmt.width and fmt.channels
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

    async def _drop_live(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            await live.abort()

    async def _transcribe(
        self, model: str | None, audio: bytes, params: TranscribeParams
    ) -> tuple[TranscribeResult, bool]:
        """Relay segments as transcript chunks while the worker decodes; return the result."""
        streamed = False
        async with contextlib.aclosing(self._service.stream(model, audio, params)) as transcription:
            async for item in transcription:
                if isinstance(item, TranscribeResult):
                    return item, streamed
                if not streamed:
                    await self.write_event(TranscriptStart(language=params.language).event())
                    streamed = True
                await self.write_event(TranscriptChunk(text=item.text).event())
        raise ServiceError(FailureKind.INTERNAL, "the worker sent no result", "transcription_failed")
