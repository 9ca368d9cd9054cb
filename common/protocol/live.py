"""The live-transcription vocabulary: a session's parameters and the events it produces.

The worker's engine (`worker.engine.live`) returns these events, the worker ships them
as they are inside `session_event` messages, and the supervisor's interfaces translate
them to their wire (WebSocket JSON, Wyoming transcript events). Declared once, here; ML-free.
Times are seconds of session audio, counted from the session's first sample.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

import msgspec

from common.protocol.types import Segment


class LiveParams(msgspec.Struct, frozen=True, kw_only=True):
    """What a client chose for one live stream, validated at the supervisor's edge."""

    language: str | None = None
    prompt: str | None = None  # context for the first utterance (later ones are prompted with what was said)
    #: Raw audio arrives as signed 16-bit little-endian mono PCM at this rate; the worker resamples.
    sample_rate: Annotated[int, msgspec.Meta(ge=8000, le=48000)] = 16000
    #: Silence that ends an utterance (its final is sent then).
    end_silence_ms: Annotated[int, msgspec.Meta(ge=100, le=5000)] = 500
    #: Word timings in finals (partials always use them internally).
    word_timestamps: bool = False
    #: Who ends an utterance: the VAD's end-of-speech silence, or only the client's commits
    #: ("manual": one utterance from the first speech to each commit, pauses included).
    turns: Literal["vad", "manual"] = "vad"
    #: The VAD's speech probability threshold (Silero's score; the pause threshold follows it).
    vad_threshold: Annotated[float, msgspec.Meta(ge=0.05, le=0.99)] = 0.5
    #: A Final for every utterance, even one that decoded to no text (and one per commit,
    #: even with no speech heard): for clients that wait on an answer per commit (Realtime).
    empty_finals: bool = False


class SpeechStarted(msgspec.Struct, frozen=True, tag="speech_started"):
    at: float
    utterance: int = 0  # the index of the utterance it opens / ends (counts up from 0 per session)


class SpeechStopped(msgspec.Struct, frozen=True, tag="speech_stopped"):
    at: float
    utterance: int = 0  # the index of the utterance it opens / ends (counts up from 0 per session)


class Partial(msgspec.Struct, frozen=True, tag="partial"):
    """The current utterance so far. `committed` is a prefix of `text` that never changes
    (and only grows) within an utterance; the rest of `text` is tentative."""

    seq: int  # per session, counts up across partials and finals
    text: str
    committed: str
    utterance: int = 0  # which utterance (counts up from 0 per session)


class Final(msgspec.Struct, frozen=True, tag="final"):
    """One utterance, decoded whole with the configured beam, once its end-of-speech silence is over."""

    seq: int
    text: str
    start: float
    end: float
    segments: list[Segment]
    utterance: int = 0


LiveEvent: TypeAlias = SpeechStarted | SpeechStopped | Partial | Final
