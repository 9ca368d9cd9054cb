"""The data that crosses the wire, as frozen msgspec Structs: what the message kinds carry.

The data types (TranscribeParams, Segment, TranscribeResult, ReadyInfo …) are also what
the HTTP and Wyoming interfaces build and render, so a field is declared once, here, and
decoding a message validates it: a TRANSCRIBE whose parameters have the wrong types is
refused by the codec, at the worker's edge, before any library sees it. Both
`common.protocol.messages` and `common.protocol.live` build on these, so neither needs the other's.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

import msgspec

# -- data ----------------------------------------------------------------------


class ErrorCode(StrEnum):
    """Why a request failed; the supervisor maps each to an HTTP status."""

    BAD_AUDIO = "bad_audio"  # undecodable, empty or silent-length input: the client's fault
    BAD_PARAMETER = "bad_parameter"  # e.g. a language the model does not know, or undecodable parameters
    AUDIO_TOO_LONG = "audio_too_long"  # over the model's max_audio_seconds: the client's fault, do not retry
    INTERNAL = "internal"  # the model failed: the server's fault


class Heard(msgspec.Struct, frozen=True):
    """Text already decoded from a stretch of audio, with its times: a live decode's context."""

    start: float
    end: float
    text: str


class TranscribeParams(msgspec.Struct, frozen=True):
    """What a client may ask of a transcription; the worker's decoder checks the types."""

    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    beam_size: int | None = None
    vad_filter: bool = False
    word_timestamps: bool = False
    hotwords: str | None = None
    task: Literal["transcribe", "translate"] = "transcribe"
    stream: bool = False  # send SEGMENT messages as segments are decoded
    #: "file": an audio file in any container (decoded with FFmpeg);
    #: "pcm": raw signed little-endian samples (Wyoming) at `pcm_rate`/`pcm_width`/`pcm_channels`.
    audio_format: Literal["file", "pcm"] = "file"
    pcm_rate: int = 16000
    pcm_width: int = 2
    pcm_channels: int = 1
    #: Whisper's encoder window in seconds; None: its own 30 s. Live partials ask for less
    #: (worker.engine.live.jobs.live_window: cheaper); not settable from any interface.
    window_seconds: int | None = None
    #: Live decodes only, like `window_seconds`: the audio's first `heard_seconds` were decoded
    #: before, and `heard` is what was said in them (times in this audio). The decoder reads
    #: that audio with its text as given, and transcribes only what follows; a backend that
    #: cannot take context skips those seconds.
    heard: list[Heard] = msgspec.field(default_factory=list)
    heard_seconds: float = 0.0
    #: Live finals only: the words the new audio's text must begin with (those its partials
    #: committed); a backend that cannot force words decodes freely.
    prefix: str | None = None
    #: Live decodes only: a partial or a final. A backend that batches decodes finals first,
    #: partials last (file requests between).
    live: Literal["partial", "final"] | None = None


class Word(msgspec.Struct, frozen=True):
    start: float
    end: float
    word: str
    probability: float


class Segment(msgspec.Struct, frozen=True):
    id: int
    start: float
    end: float
    text: str
    seek: int = 0
    tokens: list[int] = msgspec.field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: list[Word] | None = None


class TranscribeResult(msgspec.Struct, frozen=True):
    text: str
    language: str | None
    duration: float
    segments: list[Segment] = msgspec.field(default_factory=list)


class ReadyInfo(msgspec.Struct, frozen=True):
    """Sent once, when the model is loaded and the worker takes requests."""

    pid: int
    backend: str
    device: str
    compute_type: str
    load_seconds: float
    languages: list[str] = msgspec.field(default_factory=list)
    multilingual: bool = True
    concurrency: int = 1  # its lanes: model calls run side by side (see common.lane_plan)
    #: Requests and live decodes it takes at once (0: `concurrency`), more than its lanes
    #: where a backend decodes the windows of several in one batch.
    slots: int = 0
    #: Full copies of the weights it holds once every lane is open: `concurrency` when each
    #: lane has its own, 1 when they share one (see common.lane_plan), with why.
    copies: int = 1
    lane_weights: Literal["copy", "shared"] = "copy"
    lanes_reason: str = ""
    #: RAM one copy of the weights costs (its load's RSS growth or its weights file, the
    #: larger), 0 when unknown.
    copy_mb: float = 0.0
    #: The RSS it will have once every copy is loaded: lanes beyond the first open after
    #: READY as their copies load, and the supervisor counts them from READY on.
    footprint_mb: float = 0.0


#: Upper bounds (seconds) of the live latency histograms a heartbeat carries, shared by
#: both sides so the supervisor can sum any worker's counts; +Inf is the last bucket.
LATENCY_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class Latencies(msgspec.Struct, frozen=True):
    """A latency histogram as plain counters: how many observations fell in each bucket of
    `LATENCY_BUCKETS` (one more count for +Inf), and their sum in seconds. Counters only
    grow, so the supervisor can add up those of every worker a model has had."""

    counts: tuple[int, ...] = (0,) * (len(LATENCY_BUCKETS) + 1)
    sum: float = 0.0


class WorkTotals(msgspec.Struct, frozen=True):
    """What a worker has done since it started; only it can see these. Every field is a
    counter that restarts with the process (the supervisor banks a worker's last figures
    when it ends, so a model's totals never go backwards)."""

    #: Seconds its compute lanes spent in the model on file requests (not decoding the audio
    #: file nor waiting; a batched call's time shared by its windows), and the seconds of
    #: audio those requests held.
    inference_seconds: float = 0.0
    audio_seconds: float = 0.0
    #: Seconds its lanes spent in the model on live sessions' partials and finals.
    live_inference_seconds: float = 0.0
    #: Live sessions: from the audio where speech started reaching the worker to the first
    #: partial (or final) of that utterance going out...
    first_partial: Latencies = Latencies()
    #: ... and from the audio of an utterance's last voiced sample reaching the worker to its
    #: final going out (the `end_silence_ms` wait for the pause included, as a speaker feels it).
    final_after_speech: Latencies = Latencies()
    #: Model calls its compute lanes made for windows (or stretches), and how many they held:
    #: `pass_items / passes` is the mean batch.
    passes: int = 0
    pass_items: int = 0
