"""A Wyoming event reader that refuses what wyoming's own reader would buffer.

wyoming's reader trusts `data_length`/`payload_length` and would wait for, and buffer,
whatever size a broken or hostile client announces.
"""

from __future__ import annotations

import asyncio
import json
import logging

from wyoming.event import Event

log = logging.getLogger("asr.wyoming")

#: Largest JSON header line, data block or payload one event may carry.
MAX_EVENT_BYTES = 4 * 1024 * 1024


async def read_event(reader: asyncio.StreamReader) -> Event | None:
    """Read one Wyoming event; None (close the connection) on garbage or an oversized event."""
    try:
        line = await reader.readline()
    except ValueError:  # a header line longer than the stream limit
        return None
    if not line:
        return None
    try:
        header = json.loads(line)
        data_length = int(header.get("data_length") or 0)
        payload_length = int(header.get("payload_length") or 0)
        event_type = str(header["type"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not (0 <= data_length <= MAX_EVENT_BYTES and 0 <= payload_length <= MAX_EVENT_BYTES):
        log.warning("closing a Wyoming connection: event of %d+%d bytes announced", data_length, payload_length)
        return None
    data = header.get("data") or {}
    if data_length:
        try:
            data.update(json.loads(await reader.readexactly(data_length)))
        except (ValueError, AttributeError, TypeError):
            return None
    payload = await reader.readexactly(payload_length) if payload_length else None
    return Event(type=event_type, data=data, payload=payload)
