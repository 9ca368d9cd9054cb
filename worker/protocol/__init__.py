"""The wire between the supervisor and a worker: typed messages over ZeroMQ.

Both sides import this module, so it must stay free of ML imports (the supervisor
loads it). A message is a multipart ZeroMQ message:

    frame 0: JSON header  {"kind": ..., "id": ..., ...fields}
    frame 1: optional raw payload (audio bytes); never base64 inside the JSON

The supervisor binds a ROUTER socket per worker, the worker connects a DEALER, so
several requests can be in flight at once and neither side can wedge the other
the way a REQ/REP lockstep does when a peer dies.

Kinds, worker → supervisor:
    SPARE      the process is up with its ML libraries imported, waiting for LOAD
    READY      the model is loaded (load time, device, compute type, languages)
    HEARTBEAT  liveness plus stats, every `heartbeat_interval` seconds
    SEGMENT    one decoded segment of request `id`, sent as soon as it exists (streaming)
    RESULT     a finished transcription for request `id`
    ERROR      request `id` failed; `code` says whether the input was at fault
    DYING      the worker is about to exit (load failure, fatal error): `message` says why

Kinds, supervisor → worker:
    LOAD       load this model (its options) and answer READY or DYING
    TRANSCRIBE request `id` with parameters; frame 1 holds the encoded audio file
    CANCEL     the client of request `id` went away: stop decoding it
    SHUTDOWN   finish nothing new, exit now
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import msgspec

from worker.protocol.options import ModelOptions

__all__ = ["ModelOptions"]

#: ZeroMQ identity the worker's DEALER uses, so the supervisor's ROUTER can address it.
WORKER_IDENTITY = b"worker"


class Kind(StrEnum):
    SPARE = "spare"
    LOAD = "load"
    READY = "ready"
    HEARTBEAT = "heartbeat"
    SEGMENT = "segment"
    RESULT = "result"
    ERROR = "error"
    DYING = "dying"
    TRANSCRIBE = "transcribe"
    CANCEL = "cancel"
    SHUTDOWN = "shutdown"


class ErrorCode(StrEnum):
    """Why a request failed; the supervisor maps each to an HTTP status."""

    BAD_AUDIO = "bad_audio"  # undecodable, empty or silent-length input: the client's fault
    BAD_PARAMETER = "bad_parameter"  # e.g. a language the model does not know
    INTERNAL = "internal"  # the model failed: the server's fault


@dataclass(frozen=True, slots=True)
class TranscribeParams:
    """What a client may ask of a transcription, already validated at the edge."""

    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    beam_size: int | None = None
    vad_filter: bool = False
    word_timestamps: bool = False
    hotwords: str | None = None
    task: str = "transcribe"
    stream: bool = False  # send SEGMENT messages as segments are decoded
    #: "file": an audio file in any container (decoded with FFmpeg);
    #: "pcm": raw signed little-endian samples (Wyoming) at `pcm_rate`/`pcm_width`/`pcm_channels`.
    audio_format: str = "file"
    pcm_rate: int = 16000
    pcm_width: int = 2
    pcm_channels: int = 1


@dataclass(frozen=True, slots=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    seek: int = 0
    tokens: list[int] = field(default_factory=list)
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: list[Word] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        words = data.get("words")
        fields = {**data, "words": [Word(**w) for w in words] if words is not None else None}
        return cls(**fields)


@dataclass(frozen=True, slots=True)
class TranscribeResult:
    text: str
    language: str | None
    duration: float
    segments: list[Segment] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TranscribeResult:
        segments = [Segment.from_dict(s) for s in data.get("segments", [])]
        return cls(
            text=data["text"],
            language=data.get("language"),
            duration=data.get("duration", 0.0),
            segments=segments,
        )


@dataclass(frozen=True, slots=True)
class ReadyInfo:
    """Sent once, when the model is loaded and the worker takes requests."""

    pid: int
    backend: str
    device: str
    compute_type: str
    load_seconds: float
    languages: list[str] = field(default_factory=list)
    multilingual: bool = True
    concurrency: int = 1  # requests it decodes in parallel


@dataclass(frozen=True, slots=True)
class Message:
    """One decoded message: its kind, the request it belongs to, and its fields."""

    kind: Kind
    id: str = ""
    body: dict[str, Any] = field(default_factory=dict)
    payload: bytes | memoryview | None = None

    def to_frames(self) -> list[bytes | memoryview]:
        header = {"kind": self.kind.value, "id": self.id, **self.body}
        frames: list[bytes | memoryview] = [json.dumps(header).encode()]
        if self.payload is not None:
            frames.append(self.payload)
        return frames

    @classmethod
    def from_frames(cls, frames: list[Any]) -> Message:
        """Decode frames (bytes or zmq.Frame); raises ValueError on a malformed message."""
        if not frames:
            raise ValueError("empty message")
        head = frames[0]
        raw = head.bytes if hasattr(head, "bytes") else head
        try:
            header = json.loads(raw)
            kind = Kind(header.pop("kind"))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed header: {exc}") from exc
        request_id = str(header.pop("id", ""))
        payload = None
        if len(frames) > 1:
            frame = frames[1]
            payload = frame.buffer if hasattr(frame, "buffer") else frame
        return cls(kind=kind, id=request_id, body=header, payload=payload)


def transcribe_message(request_id: str, params: TranscribeParams, audio: bytes) -> Message:
    return Message(Kind.TRANSCRIBE, request_id, {"params": asdict(params)}, audio)


def segment_message(request_id: str, segment: Segment) -> Message:
    return Message(Kind.SEGMENT, request_id, {"segment": asdict(segment)})


def result_message(request_id: str, result: TranscribeResult) -> Message:
    return Message(Kind.RESULT, request_id, {"result": asdict(result)})


def error_message(request_id: str, code: ErrorCode, message: str) -> Message:
    return Message(Kind.ERROR, request_id, {"code": code.value, "message": message})


def load_message(options: ModelOptions) -> Message:
    return Message(Kind.LOAD, "", {"options": msgspec.to_builtins(options)})


def ready_message(info: ReadyInfo) -> Message:
    return Message(Kind.READY, "", {"info": asdict(info)})


def dying_message(reason: str) -> Message:
    return Message(Kind.DYING, "", {"message": reason})
