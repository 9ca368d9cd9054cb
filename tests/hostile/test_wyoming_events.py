"""Malformed Wyoming events: an `error` event with a code, the close, one log line; never a traceback."""

from __future__ import annotations

import asyncio
import json
import wave

import pytest
from conftest import ASSETS, Server, record_figure, shared_server
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, async_read_event

#: The run's shared server (tests/conftest.py): tiny.en, the default model, TTL off.
server = shared_server


@pytest.fixture(scope="module", autouse=True)
def log_mark(server: Server) -> int:
    """Where this module's part of the shared server's log begins (taken before its first test)."""
    return len(server.log())


FORMAT = {"rate": 16000, "width": 2, "channels": 1}


def frame(event_type: str, data: object = None, payload: bytes = b"", **header: object) -> bytes:
    """One event as a client puts it on the wire, however wrong `data` or `header` are."""
    head: dict[str, object] = {"type": event_type, **header}
    if data is not None:
        head["data"] = data
    if payload:
        head.setdefault("payload_length", len(payload))
    return json.dumps(head).encode() + b"\n" + payload


START = frame("audio-start", FORMAT)
CHUNK = frame("audio-chunk", FORMAT, b"\0\0" * 800)

MALFORMED = {
    "a chunk without rate": (START + frame("audio-chunk", {"width": 2, "channels": 1}, b"\0\0"), "bad_event"),
    "a chunk of width 0": (START + frame("audio-chunk", {**FORMAT, "width": 0}, b"\0\0"), "bad_event"),
    "a rate as a string": (START + frame("audio-chunk", {**FORMAT, "rate": "16000"}, b"\0\0"), "bad_event"),
    "a width change mid-utterance": (
        START + CHUNK + frame("audio-chunk", {**FORMAT, "width": 4}, b"\0" * 8) + frame("audio-stop"),
        "bad_audio",
    ),
    "a chunk that is not whole frames": (START + frame("audio-chunk", FORMAT, b"\0\0\0"), "bad_audio"),
    "data that is a string": (frame("audio-chunk", "hello", b"\0\0"), "bad_event"),
    "data that is a list": (frame("transcribe", [1, 2]), "bad_event"),
    "a data block that is not an object": (frame("describe", data_length=6) + b"[1, 2]", "bad_event"),
    "a data block that is not JSON": (frame("describe", data_length=4) + b"\xff\xfe{}", "bad_event"),
    "a transcribe whose name is a number": (frame("transcribe", {"name": 5}), "bad_event"),
    "a transcribe whose language is a list": (frame("transcribe", {"language": ["en"]}), "bad_event"),
    "a prompt that is not a string": (frame("transcribe", {"context": {"prompt": 5}}), "bad_event"),
    "a header that is not JSON": (b"\x00\xffthis is not json\n", "bad_event"),
    "a header that is a list": (b"[1, 2]\n", "bad_event"),
    "a header without a type": (b'{"no": "type"}\n', "bad_event"),
    "a header nested past recursion": (b"[" * 60_000 + b"\n", "bad_event"),
    "a negative payload length": (frame("audio-chunk", FORMAT, payload_length=-5), "bad_event"),
    "a payload length as a string": (frame("audio-chunk", FORMAT, payload_length="12"), "bad_event"),
    "a terabyte payload announced": (frame("audio-chunk", FORMAT, payload_length=10**12), "event_too_large"),
    "a terabyte data block announced": (frame("describe", data_length=10**12), "event_too_large"),
    "a header line of 100 KB": (b'{"type": "describe", "x": "' + b"a" * 100_000 + b'"}\n', "event_too_large"),
}


async def exchange(port: int, data: bytes) -> list[Event]:
    """Send raw bytes; return every event that comes back before the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        events = []
        while (event := await asyncio.wait_for(async_read_event(reader), 20)) is not None:
            events.append(event)
        return events
    finally:
        writer.close()


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_event_gets_an_error_and_the_close(server: Server, case: str) -> None:
    data, code = MALFORMED[case]
    events = asyncio.run(exchange(server.wyoming_port, data))
    assert [e.type for e in events] == ["error"], events  # then the close: exchange() read to the end
    error = Error.from_event(events[0])
    assert error.code == code, error


def test_the_log_has_one_line_per_refusal_and_no_traceback(server: Server, log_mark: int) -> None:
    # Runs after the parametrized cases above (pytest keeps file order).
    log = server.log(log_mark)
    assert "Traceback" not in log and "Task exception" not in log, log[-3000:]
    refusals = [line for line in log.splitlines() if "WARNING asr.wyoming" in line and "closing (" in line]
    assert len(refusals) >= len(MALFORMED), "\n".join(refusals)

    # And the next client is served as if nothing happened.
    with wave.open(str(ASSETS / "short.wav"), "rb") as w:
        audio, rate = w.readframes(w.getnframes()), w.getframerate()

    async def transcribe() -> Event | None:
        async with AsyncTcpClient("127.0.0.1", server.wyoming_port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
            await client.write_event(AudioChunk(rate=rate, width=2, channels=1, audio=audio).event())
            await client.write_event(AudioStop().event())
            while (event := await asyncio.wait_for(client.read_event(), 60)) is not None:
                if Transcript.is_type(event.type) or Error.is_type(event.type):
                    return event
        return None

    pid = server.model()["pid"]
    event = asyncio.run(transcribe())
    assert event is not None and Transcript.is_type(event.type), event
    assert "kitchen" in Transcript.from_event(event).text.lower()
    assert server.proc.poll() is None
    crashed = int(pid is not None and server.model()["pid"] != pid)
    record_figure(
        "hostile input", "Wyoming: malformed-event cases / tracebacks / crashes", f"{len(MALFORMED)} / 0 / {crashed}"
    )
