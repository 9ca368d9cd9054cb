"""Messages to ZeroMQ frames and back: the only place the wire format is written or read.

A message is one or two frames:

    frame 0: msgpack of the message Struct, tagged with its `kind`
    frame 1: the raw payload (audio bytes), present exactly when the kind carries one

The payload stays a frame of its own so audio is never copied into msgpack, let alone
base64. Anything that does not decode to a known kind with valid fields raises
`ProtocolError`, which keeps the request id when it can still be read, so the receiver
can answer that one request with an ERROR instead of leaving its caller waiting.

The decoder is built from the `Message` union, so a new kind needs no change here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import msgspec

from common.protocol.messages import Message, kind_of

#: What a frame may be on the way in: bytes (a copying recv) or a memoryview of a zmq.Frame.
Frame: TypeAlias = bytes | memoryview
#: The raw payload frame; a memoryview when received without copying.
Payload: TypeAlias = bytes | memoryview


class ProtocolError(ValueError):
    """Frames that are not a valid message.

    `request_id` and `kind` are whatever could still be read from frame 0 (None if not),
    so that the receiver can fail the one request, or phase, the message was about.
    """

    def __init__(self, reason: str, *, request_id: str | None = None, kind: str | None = None) -> None:
        super().__init__(reason)
        self.request_id = request_id
        self.kind = kind


_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode(message: Message, payload: Payload | None = None) -> list[Frame]:
    """The frames for `message`, with `payload` as frame 1 (never copied into msgpack)."""
    if message.carries_payload != (payload is not None):
        need = "needs" if message.carries_payload else "takes no"
        raise ProtocolError(
            f"a {kind_of(message)} message {need} a payload frame",
            request_id=getattr(message, "id", None),
            kind=kind_of(message),
        )
    frames: list[Frame] = [_encoder.encode(message)]
    if payload is not None:
        frames.append(payload)
    return frames


def decode(frames: Sequence[Frame]) -> tuple[Message, Payload | None]:
    """The message in `frames` and its payload frame (None when its kind has none)."""
    if not frames:
        raise ProtocolError("empty message")
    try:
        message = _decoder.decode(frames[0])
    except msgspec.DecodeError as exc:
        request_id, kind = _readable_envelope(frames[0])
        raise ProtocolError(f"malformed {kind or 'message'}: {exc}", request_id=request_id, kind=kind) from exc
    request_id = getattr(message, "id", None)
    kind = kind_of(message)
    if len(frames) > 2:
        raise ProtocolError(
            f"a {kind} message has {len(frames)} frames; at most 2 are allowed", request_id=request_id, kind=kind
        )
    payload = frames[1] if len(frames) == 2 else None
    if message.carries_payload != (payload is not None):
        need = "needs" if message.carries_payload else "takes no"
        raise ProtocolError(f"a {kind} message {need} a payload frame", request_id=request_id, kind=kind)
    return message, payload


def _readable_envelope(head: Frame) -> tuple[str | None, str | None]:
    """The `id` and `kind` of an invalid message, if frame 0 is at least a msgpack map holding them."""
    try:
        raw: Any = msgspec.msgpack.decode(head)
    except msgspec.DecodeError:
        return None, None
    if not isinstance(raw, dict):
        return None, None
    request_id, kind = raw.get("id"), raw.get("kind")
    return (request_id if isinstance(request_id, str) else None, kind if isinstance(kind, str) else None)
