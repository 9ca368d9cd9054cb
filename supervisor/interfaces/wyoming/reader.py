"""A Wyoming event reader that refuses what wyoming's own reader would buffer or trust.

wyoming's reader trusts `data_length`/`payload_length` and would wait for, and buffer,
whatever size a broken or hostile client announces; and it passes on `data` of any type.
Here each size is bounded, the audio payload is counted on the shared budget before it
is read, and anything malformed is a `Refusal` (an `error` event, then the close).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from wyoming.event import Event

from supervisor.interfaces.wyoming.events import Refusal

#: The largest `data` block an event may carry: events we act on have a few small fields.
MAX_DATA_BYTES = 64 * 1024
#: The largest payload (an audio chunk) one event may carry: Home Assistant sends 2 KB.
MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


async def read_event(reader: asyncio.StreamReader, hold: Callable[[int], None]) -> Event | None:
    """Read one Wyoming event; None when the client has closed the connection.

    `hold(n)` is called before an n-byte payload is read (it may refuse); the caller
    releases it once the event is handled. The header line is bounded by the stream's
    limit (64 KiB by default): a longer one is refused.
    """
    try:
        line = await reader.readline()
    except ValueError:  # a header line longer than the stream limit
        raise Refusal("event_too_large", "event header line too long") from None
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise asyncio.IncompleteReadError(line, None)  # the client left mid-header
    header = _decode(line, "header")
    event_type = header.get("type")
    data = header.get("data") or {}
    if not isinstance(event_type, str) or not isinstance(data, dict):
        raise Refusal("bad_event", "an event header needs a string `type` and an object `data`")
    data_length = _size(header, "data_length")
    payload_length = _size(header, "payload_length")
    if data_length > MAX_DATA_BYTES or payload_length > MAX_PAYLOAD_BYTES:
        raise Refusal(
            "event_too_large",
            f"{event_type} event announces {data_length} bytes of data and {payload_length} of payload; "
            f"the limits are {MAX_DATA_BYTES} and {MAX_PAYLOAD_BYTES}",
        )
    if data_length:
        extra = _decode(await reader.readexactly(data_length), "data")
        data = {**data, **extra}
    payload = None
    if payload_length:
        hold(payload_length)
        payload = await reader.readexactly(payload_length)
    return Event(type=event_type, data=data, payload=payload)


def _decode(raw: bytes, what: str) -> dict[str, object]:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError included; RecursionError: [[[[...
        raise Refusal("bad_event", f"event {what} is not JSON") from None
    if not isinstance(value, dict):
        raise Refusal("bad_event", f"event {what} is not a JSON object")
    return value


def _size(header: dict[str, object], key: str) -> int:
    value = header.get(key) or 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Refusal("bad_event", f"`{key}` must be a non-negative integer")
    return value
