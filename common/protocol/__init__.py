"""The wire between the supervisor and a worker: typed messages over ZeroMQ.

Both sides import this package, so it must stay free of ML imports (the supervisor
loads it). The supervisor binds a ROUTER socket per worker, the worker connects a DEALER,
so several requests can be in flight at once and neither side can wedge the other the
way a REQ/REP lockstep does when a peer dies.

- `common.protocol.types`: the data types the messages carry;
- `common.protocol.messages`: one frozen Struct per message kind;
- `common.protocol.codec`: `encode`/`decode` between those and frames, `ProtocolError`;
- `common.protocol.options`: `ModelOptions`, what LOAD carries;
- `common.protocol.live`: `LiveParams` and the `LiveEvent`s of a live session.

Kinds, worker → supervisor: SPARE, READY, HEARTBEAT, SEGMENT, RESULT, ERROR, DYING,
SESSION_EVENT, SESSION_ENDED, SESSION_ACK.
Kinds, supervisor → worker: LOAD, TRANSCRIBE (+ audio frame), CANCEL, SHUTDOWN,
SESSION_OPEN, SESSION_AUDIO (+ PCM frame), SESSION_COMMIT, SESSION_CLOSE.
"""

from __future__ import annotations

from common.protocol.codec import Frame, Payload, ProtocolError, decode, encode
from common.protocol.live import Final, LiveEvent, LiveParams, Partial, SpeechStarted, SpeechStopped
from common.protocol.messages import (
    Cancel,
    Dying,
    Error,
    FromWorker,
    Heartbeat,
    Load,
    Message,
    Ready,
    Result,
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
    ToWorker,
    Transcribe,
    kind_of,
)
from common.protocol.options import ModelOptions
from common.protocol.types import (
    LATENCY_BUCKETS,
    ErrorCode,
    Heard,
    Latencies,
    ReadyInfo,
    Segment,
    TranscribeParams,
    TranscribeResult,
    Word,
    WorkTotals,
)

#: ZeroMQ identity the worker's DEALER uses, so the supervisor's ROUTER can address it.
WORKER_IDENTITY = b"worker"

__all__ = [
    "LATENCY_BUCKETS",
    "WORKER_IDENTITY",
    "Cancel",
    "Dying",
    "Error",
    "ErrorCode",
    "Final",
    "Frame",
    "FromWorker",
    "Heard",
    "Heartbeat",
    "Latencies",
    "LiveEvent",
    "LiveParams",
    "Load",
    "Message",
    "ModelOptions",
    "Partial",
    "Payload",
    "ProtocolError",
    "Ready",
    "ReadyInfo",
    "Result",
    "Segment",
    "SegmentDecoded",
    "SessionAck",
    "SessionAudio",
    "SessionClose",
    "SessionCommit",
    "SessionEnded",
    "SessionEvent",
    "SessionOpen",
    "Shutdown",
    "Spare",
    "SpeechStarted",
    "SpeechStopped",
    "ToWorker",
    "Transcribe",
    "TranscribeParams",
    "TranscribeResult",
    "Word",
    "WorkTotals",
    "decode",
    "encode",
    "kind_of",
]
