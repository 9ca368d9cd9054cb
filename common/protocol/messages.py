"""Everything that crosses the wire, as frozen msgspec Structs: the data, then one type per message kind.

The data types (TranscribeParams, Segment, TranscribeResult, ReadyInfo …) are also what
the HTTP and Wyoming interfaces build and render, so a field is declared once, here, and
decoding a message validates it: a TRANSCRIBE whose parameters have the wrong types is
refused by the codec, at the worker's edge, before any library sees it.

Each message kind is a Struct tagged with its wire name in the `kind` field, and `Message`
is the union of them all. Adding a kind (as the live-session ones were: open, audio with
a sequence number, commit, close, event, ended) is purely additive: a new Struct with a
new tag, a `carries_payload` flag if it has a raw frame, and one more member in
`ToWorker` or `FromWorker`. No existing kind, tag or field changes, and the codec needs no
edit: it is built from the union. A peer that does not know a new kind answers it like any
undecodable message (see `common.protocol.codec`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, Literal, TypeAlias

import msgspec

from common.protocol.options import ModelOptions

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
    concurrency: int = 1  # requests it decodes in parallel (its lanes)
    #: Full copies of the weights it holds once every lane is open: `concurrency` when each
    #: lane has its own, 1 when they share one (see worker.engine.lane_plan), with why.
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

    #: Seconds its lanes spent in the model on file requests (not decoding the audio file
    #: nor waiting for a lane), and the seconds of audio those requests held.
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


# The live vocabulary (`LiveParams`, the `LiveEvent`s) is declared in `common.protocol.live`,
# which builds on `Segment` above: imported here, once the data types exist, for the session kinds.
from common.protocol.live import LiveEvent, LiveParams

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
    lanes: int  # requests it can decode in parallel
    lanes_busy: int
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
    the decoder is paced (see `supervisor.live` for what each interface does then)."""

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
