"""The wire codec: every message kind round-trips, audio stays a frame of its own, bad frames say whose they were."""

from __future__ import annotations

import subprocess
import sys
import typing

import msgspec
import pytest

from common.protocol import (
    Cancel,
    Dying,
    Error,
    ErrorCode,
    Final,
    FromWorker,
    Heartbeat,
    LiveEvent,
    LiveParams,
    Load,
    Message,
    ModelOptions,
    Partial,
    ProtocolError,
    Ready,
    ReadyInfo,
    Result,
    Segment,
    SegmentDecoded,
    SessionAck,
    SessionAudio,
    SessionClose,
    SessionCommit,
    SessionEnded,
    SessionEvent,
    SessionOpen,
    Shutdown,
    Spare,
    SpeechStarted,
    SpeechStopped,
    ToWorker,
    Transcribe,
    TranscribeParams,
    TranscribeResult,
    Word,
    decode,
    encode,
    kind_of,
)

KINDS: tuple[type[Message], ...] = typing.get_args(Message)
AUDIO = b"RIFF\x00\x01audio-bytes\xff" * 64

_SEGMENT = Segment(
    id=0,
    start=0.0,
    end=1.5,
    text=" The quick brown fox",
    seek=0,
    tokens=[50363, 383, 2068],
    temperature=0.0,
    avg_logprob=-0.2,
    compression_ratio=1.1,
    no_speech_prob=0.01,
    words=[Word(start=0.0, end=0.4, word=" The", probability=0.99)],
)

#: One full instance of each kind. A kind missing here fails test_every_kind_has_a_sample,
#: so a new kind cannot skip the round-trip tests.
SAMPLES: dict[type[Message], Message] = {
    Load: Load(ModelOptions(source="bundled", device="cpu", compute_type="int8", cache_dir="/tmp/models")),
    Transcribe: Transcribe(
        id="req-1",
        params=TranscribeParams(language="en", temperature=0.2, stream=True, audio_format="pcm", pcm_rate=22050),
    ),
    Cancel: Cancel(id="req-1"),
    Shutdown: Shutdown(),
    Spare: Spare(),
    Ready: Ready(
        info=ReadyInfo(
            pid=42,
            backend="faster-whisper",
            device="cpu",
            compute_type="int8",
            load_seconds=0.8,
            languages=["en"],
            multilingual=False,
            concurrency=2,
        )
    ),
    Heartbeat: Heartbeat(
        in_flight=1,
        served=7,
        lanes=2,
        lanes_busy=1,
        rss_bytes=300_000_000,
        vram_bytes=None,
        last_inference_at=1_700_000_000.5,
        time=1_700_000_001.0,
        sessions=2,
    ),
    SegmentDecoded: SegmentDecoded(id="req-1", segment=_SEGMENT),
    Result: Result(
        id="req-1",
        result=TranscribeResult(text="The quick brown fox", language="en", duration=1.5, segments=[_SEGMENT]),
    ),
    Error: Error(id="req-1", code=ErrorCode.BAD_AUDIO, message="could not decode the audio file"),
    Dying: Dying(reason="faster-whisper could not load 'nowhere'"),
    SessionOpen: SessionOpen(
        id="live-1",
        params=LiveParams(language="en", prompt="Foxes.", sample_rate=44100, end_silence_ms=700, word_timestamps=True),
    ),
    SessionAudio: SessionAudio(id="live-1", seq=3),
    SessionCommit: SessionCommit(id="live-1"),
    SessionClose: SessionClose(id="live-1", abort=True),
    SessionEvent: SessionEvent(
        id="live-1", event=Final(seq=4, text="The quick brown fox", start=0.2, end=1.7, segments=[_SEGMENT])
    ),
    SessionEnded: SessionEnded(id="live-1"),
    SessionAck: SessionAck(id="live-1", seq=3),
}


def _payload_for(kind: type[Message]) -> bytes | None:
    return AUDIO if kind.carries_payload else None


def _head(fields: dict[str, object]) -> bytes:
    return msgspec.msgpack.encode(fields)


def test_every_kind_has_a_sample() -> None:
    assert set(SAMPLES) == set(KINDS)


def test_kinds_have_distinct_wire_names_and_one_direction_each() -> None:
    names = [kind_of(kind) for kind in KINDS]
    assert len(set(names)) == len(names)
    to_worker, from_worker = set(typing.get_args(ToWorker)), set(typing.get_args(FromWorker))
    assert not to_worker & from_worker and to_worker | from_worker == set(KINDS)


@pytest.mark.parametrize("kind", KINDS, ids=kind_of)
def test_every_kind_round_trips(kind: type[Message]) -> None:
    message = SAMPLES[kind]
    payload = _payload_for(kind)
    frames = encode(message, payload)
    assert len(frames) == (2 if payload is not None else 1)
    assert decode(frames) == (message, payload)
    # Received without copying, frames are memoryviews of zmq.Frame buffers: same answer.
    assert decode([memoryview(frame) for frame in frames]) == (message, payload)


@pytest.mark.parametrize("kind", KINDS, ids=kind_of)
def test_frame_0_says_its_kind(kind: type[Message]) -> None:
    head = msgspec.msgpack.decode(encode(SAMPLES[kind], _payload_for(kind))[0])
    assert head["kind"] == kind_of(kind)


def test_audio_is_its_own_frame_never_inside_msgpack() -> None:
    message = SAMPLES[Transcribe]
    head, payload = encode(message, AUDIO)
    assert payload is AUDIO  # not copied
    assert b"audio-bytes" not in head
    assert not any(isinstance(v, bytes) for v in msgspec.msgpack.decode(head).values())


def test_payload_presence_is_enforced_both_ways_when_encoding() -> None:
    with pytest.raises(ProtocolError):
        encode(SAMPLES[Transcribe])
    with pytest.raises(ProtocolError):
        encode(Cancel(id="req-1"), AUDIO)


@pytest.mark.parametrize(
    ("frames", "request_id", "kind"),
    [
        pytest.param([], None, None, id="no frames"),
        pytest.param([b"\xc1 not msgpack"], None, None, id="not msgpack"),
        pytest.param([_head({"id": "req-9"})], "req-9", None, id="no kind"),
        pytest.param([_head({"kind": "no-such-kind", "id": "req-9"})], "req-9", "no-such-kind", id="unknown kind"),
        pytest.param(
            [_head({"kind": "transcribe", "id": "req-9", "params": {"beam_size": "five"}}), AUDIO],
            "req-9",
            "transcribe",
            id="params of the wrong type",
        ),
        pytest.param(
            [_head({"kind": "transcribe", "id": "req-9", "params": {"task": "summarise"}}), AUDIO],
            "req-9",
            "transcribe",
            id="params out of range",
        ),
        pytest.param([encode(SAMPLES[Transcribe], AUDIO)[0]], "req-1", "transcribe", id="audio missing"),
        pytest.param([*encode(SAMPLES[Transcribe], AUDIO), AUDIO], "req-1", "transcribe", id="three frames"),
        pytest.param([*encode(Cancel(id="req-2")), AUDIO], "req-2", "cancel", id="payload on a kind without one"),
        pytest.param(
            [_head({"kind": "error", "id": "req-3", "code": "no-such-code", "message": "?"})],
            "req-3",
            "error",
            id="unknown error code",
        ),
        pytest.param([_head({"kind": "result", "id": 7, "result": {}})], None, "result", id="id not a string"),
        pytest.param([_head({"kind": "ready", "info": {"pid": "x"}})], None, "ready", id="bad ready"),
        pytest.param([msgspec.msgpack.encode(["transcribe", "req-9"])], None, None, id="not a map"),
        pytest.param(
            [_head({"kind": "session_open", "id": "live-9", "params": {"sample_rate": 1000}})],
            "live-9",
            "session_open",
            id="live params out of range",
        ),
        pytest.param(
            [encode(SessionAudio(id="live-9", seq=0), AUDIO)[0]], "live-9", "session_audio", id="session audio missing"
        ),
        pytest.param(
            [_head({"kind": "session_event", "id": "live-9", "event": {"type": "shout", "text": "!"}})],
            "live-9",
            "session_event",
            id="unknown live event",
        ),
    ],
)
def test_malformed_frames_raise_protocol_error_with_what_is_readable(
    frames: list[bytes], request_id: str | None, kind: str | None
) -> None:
    with pytest.raises(ProtocolError) as raised:
        decode(frames)
    assert (raised.value.request_id, raised.value.kind) == (request_id, kind)


@pytest.mark.parametrize(
    "event",
    [
        SpeechStarted(at=0.32),
        SpeechStopped(at=1.9),
        Partial(seq=1, text="The quick brown", committed="The quick"),
        Final(seq=2, text="The quick brown fox", start=0.32, end=1.9, segments=[_SEGMENT]),
    ],
    ids=lambda event: type(event).__name__,
)
def test_every_live_event_round_trips_inside_a_session_event(event: LiveEvent) -> None:
    message = SessionEvent(id="live-1", event=event)
    assert decode(encode(message)) == (message, None)


def test_session_defaults_close_gracefully_and_take_16_khz() -> None:
    assert SessionClose(id="live-1").abort is False
    assert LiveParams().sample_rate == 16000
    old_heartbeat = {k: v for k, v in msgspec.structs.asdict(SAMPLES[Heartbeat]).items() if k != "sessions"}
    decoded, _ = decode([_head({"kind": "heartbeat", **old_heartbeat})])  # a worker from before sessions
    assert isinstance(decoded, Heartbeat) and decoded.sessions == 0


def test_structs_are_frozen() -> None:
    with pytest.raises(AttributeError):
        SAMPLES[Cancel].id = "other"  # type: ignore[misc, union-attr]
    with pytest.raises(AttributeError):
        TranscribeParams().language = "en"  # type: ignore[misc]


def test_params_keep_their_defaults() -> None:
    assert msgspec.structs.asdict(TranscribeParams()) == {
        "language": None,
        "prompt": None,
        "temperature": None,
        "beam_size": None,
        "vad_filter": False,
        "word_timestamps": False,
        "hotwords": None,
        "task": "transcribe",
        "stream": False,
        "audio_format": "file",
        "pcm_rate": 16000,
        "pcm_width": 2,
        "pcm_channels": 1,
        "window_seconds": None,  # Whisper's own 30 s: only live decodes ask for less
        "heard": [],  # live decodes only: what earlier finals heard in the audio
        "heard_seconds": 0.0,
        "prefix": None,  # live finals only: the committed words
        "live": None,  # live decodes only: "partial" or "final", how soon it is decoded
    }


def test_the_protocol_imports_no_ml_library() -> None:
    code = (
        "import sys, common.protocol, common.backends, common.lane_plan, common.logs, common.nvidia_smi; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'numpy', 'ctranslate2', 'faster_whisper', 'av', 'torch', 'tokenizers'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
