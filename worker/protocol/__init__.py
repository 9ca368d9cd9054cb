"""The wire between the supervisor and a worker: typed messages over ZeroMQ.

Both sides import this package, so it must stay free of ML imports (the supervisor
loads it). The supervisor binds a ROUTER socket per worker, the worker connects a DEALER,
so several requests can be in flight at once and neither side can wedge the other the
way a REQ/REP lockstep does when a peer dies.

- `worker.protocol.messages`: the data types and one frozen Struct per message kind;
- `worker.protocol.codec`: `encode`/`decode` between those and frames, `ProtocolError`;
- `worker.protocol.options`: `ModelOptions`, what LOAD carries.

Kinds, worker → supervisor: SPARE, READY, HEARTBEAT, SEGMENT, RESULT, ERROR, DYING.
Kinds, supervisor → worker: LOAD, TRANSCRIBE (+ audio frame), CANCEL, SHUTDOWN.
"""

from __future__ import annotations

from worker.protocol.codec import Frame, Payload, ProtocolError, decode, encode
from worker.protocol.messages import (
    Cancel,
    Dying,
    Error,
    ErrorCode,
    FromWorker,
    Heartbeat,
    Load,
    Message,
    Ready,
    ReadyInfo,
    Result,
    Segment,
    SegmentDecoded,
    Shutdown,
    Spare,
    ToWorker,
    Transcribe,
    TranscribeParams,
    TranscribeResult,
    Word,
    kind_of,
)
from worker.protocol.options import ModelOptions

#: ZeroMQ identity the worker's DEALER uses, so the supervisor's ROUTER can address it.
WORKER_IDENTITY = b"worker"

__all__ = [
    "WORKER_IDENTITY",
    "Cancel",
    "Dying",
    "Error",
    "ErrorCode",
    "Frame",
    "FromWorker",
    "Heartbeat",
    "Load",
    "Message",
    "ModelOptions",
    "Payload",
    "ProtocolError",
    "Ready",
    "ReadyInfo",
    "Result",
    "Segment",
    "SegmentDecoded",
    "Shutdown",
    "Spare",
    "ToWorker",
    "Transcribe",
    "TranscribeParams",
    "TranscribeResult",
    "Word",
    "decode",
    "encode",
    "kind_of",
]
