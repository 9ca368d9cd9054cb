"""The Wyoming events this server acts on, checked at the edge.

wyoming's own `from_event` trusts the client: a chunk without `rate`, a `width` of 0 or
`data` that is not an object raised deep in the handler, and the connection died with a
traceback and no answer. Here every event we handle becomes a typed value before any code
uses it, or a `Refusal` that the connection answers with an `error` event and a close.
Fields we do not know are ignored: Home Assistant and satellites send extras.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe


class Refusal(Exception):
    """The connection is answered with an `error` event (`code`, `text`) and closed."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


_T = TypeVar("_T")

Rate = Annotated[int, msgspec.Meta(ge=1000, le=384_000)]  # what the worker's resampler takes
Width = Literal[1, 2, 4]  # unsigned 8-bit, signed 16- and 32-bit little-endian samples
Channels = Annotated[int, msgspec.Meta(ge=1, le=32)]


class AudioFormat(msgspec.Struct, frozen=True):
    rate: Rate
    width: Width
    channels: Channels

    @property
    def frame_bytes(self) -> int:
        return self.width * self.channels

    def __str__(self) -> str:
        return f"{self.rate} Hz, {self.width} bytes a sample, {self.channels} channel(s)"


class TranscribeRequest(msgspec.Struct, frozen=True):
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    language: Annotated[str, msgspec.Meta(max_length=35)] | None = None
    context: dict[str, Any] | None = None

    @property
    def prompt(self) -> str | None:
        prompt = (self.context or {}).get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise Refusal("bad_event", "bad transcribe event: context.prompt must be a string")
        return prompt


class AudioBegins(msgspec.Struct, frozen=True):
    """`audio-start`: its format is informative only; the first chunk's is the utterance's."""

    rate: Rate | None = None
    width: Width | None = None
    channels: Channels | None = None


class AudioEnds(msgspec.Struct, frozen=True):
    pass


class DescribeRequest(msgspec.Struct, frozen=True):
    pass


class ChunkIn(msgspec.Struct, frozen=True):
    format: AudioFormat
    audio: bytes


Incoming = DescribeRequest | TranscribeRequest | AudioBegins | ChunkIn | AudioEnds


def parse(event: Event) -> Incoming | None:
    """The typed event, or None for a type this server does not act on (wake, tts...)."""
    if Describe.is_type(event.type):
        return DescribeRequest()
    if Transcribe.is_type(event.type):
        request = _convert(event, TranscribeRequest)
        _ = request.prompt  # a bad prompt is refused now, not when it is used
        return request
    if AudioStart.is_type(event.type):
        return _convert(event, AudioBegins)
    if AudioChunk.is_type(event.type):
        fmt = _convert(event, AudioFormat)
        audio = event.payload or b""
        if len(audio) % fmt.frame_bytes:
            raise Refusal("bad_audio", f"an audio chunk of {len(audio)} bytes is not whole frames of {fmt}")
        return ChunkIn(fmt, audio)
    if AudioStop.is_type(event.type):
        return AudioEnds()
    return None


def _convert(event: Event, kind: type[_T]) -> _T:
    try:
        return msgspec.convert(event.data, kind)
    except msgspec.ValidationError as exc:
        raise Refusal("bad_event", f"bad {event.type} event: {exc}") from None
