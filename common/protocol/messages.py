"""Everything that crosses the wire, as frozen msgspec Structs: one type per message kind.

The data the kinds carry is declared in `common.protocol.types`, the live vocabulary in
`common.protocol.live`. Each message kind is a Struct tagged with its wire name in the
`kind` field, and `Message` is the union of them all. Adding a kind (as the live-session ones were: open, audio with
a sequence number, commit, close, event, ended) is purely additive: a new Struct with a
new tag, a `carries_payload` flag if it has a raw frame, and one more member in
`ToWorker` or `FromWorker`. No existing kind, tag or field changes, and the codec needs no
edit: it is built from the union. A peer that does not know a new kind answers it like any
undecodable message (see `common.protocol.codec`).
"""

from __future__ import annotations

from typing import ClassVar, TypeAlias

import msgspec

from common.protocol.live import LiveEvent, LiveParams
from common.protocol.options import ModelOptions
from common.protocol.types import ErrorCode, ReadyInfo, Segment, TranscribeParams, TranscribeResult, WorkTotals

# -- message kinds ---------------------------------------------------------------


class _Kind(msgspec.Struct, frozen=True, tag_field="kind"):
    """Base of every message kind: the subclass's tag is its `kind` on the wire."""

    #: Whether a raw payload frame (audio) follows the struct's frame; the codec enforces it
    #: both ways, so audio can never end up inside msgpack or go missing unnoticed.
    carries_payload: ClassVar[bool] = False


# supervisor → worker


class Load(_Kind, tag="load", frozen=True):
    """Load this model; answered by READY, or by DYING with the reason it cannot."""

    options: ModelOptions
    #: The RAM memory_budget_mb leaves this worker (the budget minus the other loaded models'
    #: memory), for `lane_weights = "auto"`; None without a budget.
    room_mb: float | None = None


class Transcribe(_Kind, tag="transcribe", frozen=True):
    """Request `id`; the payload frame holds the audio (a file, or raw PCM per `params`)."""

    id: str
    params: TranscribeParams
    #: The audio is this file instead, and the payload frame is empty: a large upload the
    #: supervisor spooled to disk (supervisor.uploads), read from there so that neither
    #: process holds it. Only the supervisor can reach the worker's socket to name one.
    audio_file: str | None = None
    carries_payload: ClassVar[bool] = True


class Cancel(_Kind, tag="cancel", frozen=True):
    """The client of request `id` went away: stop decoding it."""

    id: str


class Shutdown(_Kind, tag="shutdown", frozen=True):
    """Start nothing new and exit now, whatever phase the worker is in (even mid-load).

    Live sessions end with it, without their finals: draining them is the supervisor's job."""


class SessionOpen(_Kind, tag="session_open", frozen=True):
    """Open live session `id` (the worker does not acknowledge it: a refusal is an ERROR for `id`)."""

    id: str
    params: LiveParams


class SessionAudio(_Kind, tag="session_audio", frozen=True):
    """The next frame of session `id`: the payload holds s16le mono PCM at the session's
    `params.sample_rate` (an even number of bytes, at most 1 MiB). `seq` counts frames
    from 0, so a lost or reordered frame is noticed instead of silently skipped."""

    id: str
    seq: int
    carries_payload: ClassVar[bool] = True


class SessionCommit(_Kind, tag="session_commit", frozen=True):
    """End session `id`'s current utterance now: its final is the next decode. With `drop`,
    the utterance's audio is dropped instead (no final): the client cleared its buffer."""

    id: str
    drop: bool = False


class SessionClose(_Kind, tag="session_close", frozen=True):
    """End session `id`: a final for what was heard, then SESSION_ENDED; with `abort`,
    drop it at once (no final), then SESSION_ENDED. Closing an unknown id is answered
    with SESSION_ENDED all the same."""

    id: str
    abort: bool = False


# worker → supervisor


class Spare(_Kind, tag="spare", frozen=True):
    """Up with the backend's libraries imported, waiting for LOAD."""


class Ready(_Kind, tag="ready", frozen=True):
    info: ReadyInfo


class Heartbeat(_Kind, tag="heartbeat", frozen=True):
    """Liveness, plus what only the worker knows about itself, every heartbeat interval."""

    in_flight: int  # requests received and not yet answered
    served: int  # requests answered since READY, errors included
    lanes: int  # model calls it can run side by side (ReadyInfo.concurrency, once every copy is loaded)
    lanes_busy: int  # requests and live decodes in progress: more than `lanes` where they share passes
    rss_bytes: int  # its own resident memory now
    vram_bytes: int | None  # its own GPU memory (sampled every ~10 s); None off CUDA or when unknown
    last_inference_at: float | None  # wall time the last inference finished; None before the first
    time: float  # wall time it was sent
    sessions: int = 0  # live sessions open (not counted in in_flight); their decodes count in lanes_busy
    work: WorkTotals = WorkTotals()  # counters since the process started (the model's metrics)


class SegmentDecoded(_Kind, tag="segment", frozen=True):
    """One decoded segment of request `id`, sent as soon as it exists (params.stream)."""

    id: str
    segment: Segment


class Result(_Kind, tag="result", frozen=True):
    id: str
    result: TranscribeResult


class Error(_Kind, tag="error", frozen=True):
    """Request or live session `id` failed; `code` says whose fault it was. For a session
    it is final: the worker has dropped it, and no SESSION_ENDED follows."""

    id: str
    code: ErrorCode
    message: str


class SessionEvent(_Kind, tag="session_event", frozen=True):
    """One event of live session `id` (speech started/stopped, a partial, a final), in order."""

    id: str
    event: LiveEvent


class SessionEnded(_Kind, tag="session_ended", frozen=True):
    """Session `id` is over: nothing more will come for it. Sent after a close (finals first);
    a session that fails gets an ERROR for its id instead, which ends it too."""

    id: str


class SessionAck(_Kind, tag="session_ack", frozen=True):
    """Session `id` has taken its frames up to `seq` and can take more: the supervisor keeps
    only a few seconds of a session's audio sent and not yet acknowledged. The worker holds
    its ack back while the session owes finals it has not decoded, so a client faster than
    the decoder is paced (see `supervisor.live_stream` for what each interface does then)."""

    id: str
    seq: int


class Dying(_Kind, tag="dying", frozen=True):
    """The worker is about to exit (load failure, fatal error); the supervisor reports `reason`."""

    reason: str


ToWorker: TypeAlias = Load | Transcribe | Cancel | Shutdown | SessionOpen | SessionAudio | SessionCommit | SessionClose
FromWorker: TypeAlias = (
    Spare | Ready | Heartbeat | SegmentDecoded | Result | Error | SessionEvent | SessionEnded | SessionAck | Dying
)
Message: TypeAlias = ToWorker | FromWorker


def kind_of(message: Message | type[Message]) -> str:
    """The wire name of a message (or message type): its tag."""
    cls = message if isinstance(message, type) else type(message)
    return str(cls.__struct_config__.tag)
