"""Wyoming (Home Assistant) speech-to-text, served from the same registry as HTTP.

One handler per connection, a flat dispatch on event type, and the utterance being
received kept in one small dataclass that is replaced on every `transcribe`/`audio-start`.
Audio goes to the model's worker through the same lease as an HTTP request, so it counts
for the TTL and is never cut off by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioChunkConverter, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import AsrModel, AsrProgram, Attribution, Describe, Info
from wyoming.server import AsyncEventHandler, AsyncServer

from supervisor.models import files as model_files
from supervisor.models.owner import ModelSlot, ModelUnavailable
from supervisor.models.registry import ModelRegistry, UnknownModel
from supervisor.workers.process import WorkerError, WorkerRequestError
from worker.protocol import TranscribeParams, TranscribeResult

log = logging.getLogger("asr.wyoming")

VERSION = "0.1.0"
ATTRIBUTION = Attribution(name="asr-supervisor", url="https://github.com/asr-supervisor/asr-supervisor")
#: Largest JSON header line, data block or payload one event may carry.
MAX_EVENT_BYTES = 4 * 1024 * 1024


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


def build_info(registry: ModelRegistry) -> Info:
    """The `describe` answer, from configuration alone: never loads a model."""
    models = []
    for name in registry.names():
        spec = registry.get(name).spec
        path = model_files.installed_path(spec)
        models.append(AsrModel(
            name=name,
            description=spec.description or f"{spec.backend} {name}",
            attribution=ATTRIBUTION,
            installed=path is not None,
            languages=registry.get(name).snapshot()["languages"] or model_files.languages_guess(spec) or [],
            version=VERSION,
        ))
    program = AsrProgram(
        name="asr-supervisor",
        description="asr-supervisor: every configured model, each in its own worker process",
        attribution=ATTRIBUTION,
        installed=True,
        version=VERSION,
        models=models,
        supports_transcript_streaming=True,
    )
    return Info(asr=[program])


class WyomingHandler(AsyncEventHandler):
    def __init__(self, registry: ModelRegistry, max_audio_bytes: int, idle_timeout: float, *args: Any) -> None:
        super().__init__(*args)
        self._registry = registry
        self._max_audio_bytes = max_audio_bytes
        self._idle_timeout = idle_timeout
        self._utterance = Utterance()
        self._streaming = False  # the client asked with transcribe (HA ≥ 2025 streams transcripts)

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
            self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            await self.write_event(build_info(self._registry).event())
            return True
        if Transcribe.is_type(event.type):
            transcribe = Transcribe.from_event(event)
            prompt = transcribe.context.get("prompt") if isinstance(transcribe.context, dict) else None
            self._utterance = Utterance(model=transcribe.name, language=transcribe.language, prompt=prompt)
            self._streaming = True
            # An unknown model is reported at audio-stop, where the client reads: closing
            # now would break the audio it is still writing.
            return True
        if AudioStart.is_type(event.type):
            previous = self._utterance
            self._utterance = Utterance(model=previous.model, language=previous.language, prompt=previous.prompt)
            return True
        if AudioChunk.is_type(event.type):
            return await self._add_chunk(AudioChunk.from_event(event))
        if AudioStop.is_type(event.type):
            return await self._finish()
        return True  # events for other services (wake, tts...) are not ours: ignore

    async def _add_chunk(self, chunk: AudioChunk) -> bool:
        if not self._registry.knows(self._utterance.model):
            return True  # nothing will be transcribed: don't hold the audio
        try:
            self._utterance.add(chunk)
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
            slot = self._registry.get(utterance.model)
        except UnknownModel as exc:
            await self.write_event(Error(text=str(exc), code="model_not_found").event())
            return False
        if not utterance.size:
            await self.write_event(Transcript(text="", language=utterance.language).event())
            return True
        audio = b"".join(utterance.chunks)
        fmt = utterance.converter
        assert fmt is not None and fmt.rate and fmt.width and fmt.channels
        params = TranscribeParams(language=utterance.language or None, prompt=utterance.prompt, stream=self._streaming,
                                  audio_format="pcm", pcm_rate=fmt.rate, pcm_width=fmt.width, pcm_channels=fmt.channels)
        try:
            result, streamed = await self._transcribe(slot, audio, params)
        except WorkerRequestError as exc:  # the client's audio or parameters: its fault
            await self.write_event(Error(text=str(exc), code=exc.code.value).event())
            return True
        except (WorkerError, ModelUnavailable) as exc:
            await self.write_event(Error(text=str(exc), code="transcription_failed").event())
            return True
        # Streaming order: transcript-start, transcript-chunk..., transcript, transcript-stop.
        await self.write_event(Transcript(text=result.text, language=result.language).event())
        if streamed:
            await self.write_event(TranscriptStop().event())
        return True

    async def _transcribe(
        self, slot: ModelSlot, audio: bytes, params: TranscribeParams
    ) -> tuple[TranscribeResult, bool]:
        """Send the audio through the model's lease; relay segments as transcript chunks."""
        streamed = False
        async with slot.lease() as worker, contextlib.aclosing(worker.stream(audio, params)) as items:
            async for item in items:
                if isinstance(item, TranscribeResult):
                    return item, streamed
                if not streamed:
                    await self.write_event(TranscriptStart(language=params.language).event())
                    streamed = True
                await self.write_event(TranscriptChunk(text=item.text).event())
        raise WorkerError("the worker sent no result")  # unreachable: stream() ends with a result or raises


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """Read one Wyoming event; None (close the connection) on garbage or an oversized event.

    wyoming's own reader trusts `data_length`/`payload_length` and would wait for, and
    buffer, whatever size a broken or hostile client announces.
    """
    try:
        line = await reader.readline()
    except ValueError:  # a header line longer than the stream limit
        return None
    if not line:
        return None
    try:
        header = json.loads(line)
        data_length = int(header.get("data_length") or 0)
        payload_length = int(header.get("payload_length") or 0)
        event_type = str(header["type"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not (0 <= data_length <= MAX_EVENT_BYTES and 0 <= payload_length <= MAX_EVENT_BYTES):
        log.warning("closing a Wyoming connection: event of %d+%d bytes announced", data_length, payload_length)
        return None
    data = header.get("data") or {}
    if data_length:
        try:
            data.update(json.loads(await reader.readexactly(data_length)))
        except (ValueError, AttributeError, TypeError):
            return None
    payload = await reader.readexactly(payload_length) if payload_length else None
    return Event(type=event_type, data=data, payload=payload)


class WyomingService:
    """The TCP (or unix://) listener; started and stopped by the app's lifespan."""

    def __init__(self, uri: str, registry: ModelRegistry, max_audio_bytes: int, idle_timeout: float) -> None:
        self.uri = uri
        self._server = AsyncServer.from_uri(uri)
        self._factory = partial(WyomingHandler, registry, max_audio_bytes, idle_timeout)

    async def start(self) -> None:
        await self._server.start(self._factory)
        log.info("wyoming listening on %s", self.uri)

    async def stop(self) -> None:
        await self._server.stop()
