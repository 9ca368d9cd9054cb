"""Wyoming clients that hold, hog or leave: the global audio budget, the connection cap, and
requests cancelled when their client goes away."""

from __future__ import annotations

import asyncio
import io
import json
import time
import wave
from pathlib import Path

import psutil
from conftest import ASSETS, Server, make_long_clip, wait_for
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.info import Describe, Info

#: Below the 8 kHz live sessions start at: the supervisor buffers the whole utterance.
BUFFERED_RATE = 6000
MB = 1_000_000
BASE = '[defaults]\nttl = -1\n[models."tiny.en"]\nsource = "bundled"\n'


def frame(event_type: str, data: dict[str, object] | None = None, payload: bytes = b"") -> bytes:
    head: dict[str, object] = {"type": event_type, "data": data or {}}
    if payload:
        head["payload_length"] = len(payload)
    return json.dumps(head).encode() + b"\n" + payload


def chunks(pcm: bytes, rate: int, size: int = 8192) -> bytes:
    fmt = {"rate": rate, "width": 2, "channels": 1}
    return b"".join(frame("audio-chunk", fmt, pcm[i : i + size]) for i in range(0, len(pcm), size))


async def read_all(reader: asyncio.StreamReader) -> list[Event]:
    events = []
    while (event := await async_read_event(reader)) is not None:
        events.append(event)
    return events


def rss(server: Server) -> int:
    return int(psutil.Process(server.pid).memory_info().rss)


def test_audio_held_for_all_connections_is_capped_and_given_back(make_server) -> None:  # type: ignore[no-untyped-def]
    """Three clients each hold 20 MB without audio-stop; a fourth finds the 70 MB budget
    spent and gets `too_much_audio`; when the three leave, the supervisor's memory returns."""
    server: Server = make_server(f"[server]\nwyoming_max_buffered_mb = 70\n{BASE}")
    one_mb = chunks(b"\1\0" * (MB // 2), BUFFERED_RATE)
    start = frame("audio-start", {"rate": BUFFERED_RATE, "width": 2, "channels": 1})
    before = rss(server)

    async def hold(megabytes: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.wyoming_port)
        writer.write(start)
        for _ in range(megabytes):
            writer.write(one_mb)
            await writer.drain()
        return reader, writer

    async def hog() -> list[Event]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.wyoming_port)
        answer = asyncio.create_task(read_all(reader))
        try:
            writer.write(start)
            for _ in range(40):
                writer.write(one_mb)
                await writer.drain()
        except ConnectionError:
            pass  # refused mid-stream, as it should be
        events = await asyncio.wait_for(answer, 20)
        writer.close()
        return events

    async def run() -> tuple[list[Event], int]:
        holders = await asyncio.gather(*(hold(20) for _ in range(3)))
        await asyncio.to_thread(wait_for, lambda: rss(server) > before + 55 * MB, 30, 0.05, "60 MB held")
        hogged = await hog()
        held = rss(server)
        for _, writer in holders:
            writer.close()
        return hogged, held

    hogged, held = asyncio.run(run())
    assert [e.type for e in hogged] == ["error"] and Error.from_event(hogged[0]).code == "too_much_audio"
    # The budget was the limit, not memory: with 60 MB held the hog got in no more than 10 MB.
    assert held < before + 85 * MB, (before, held)
    # Released when the connections end: back within 10 % (and 4 MB) of before.
    wait_for(lambda: rss(server) <= before * 1.1 + 4 * MB, 20, what=f"RSS back near {before / MB:.0f} MB")
    print(f"supervisor RSS: {before / MB:.0f} MB before, {held / MB:.0f} MB holding, {rss(server) / MB:.0f} MB after")
    assert "Traceback" not in server.log()


def test_connections_over_the_cap_get_an_error(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(f"[server]\nwyoming_max_connections = 2\n{BASE}")

    async def describe(client: AsyncTcpClient) -> Event | None:
        await client.write_event(Describe().event())
        return await asyncio.wait_for(client.read_event(), 10)

    async def run() -> tuple[list[Event], Event | None]:
        first, second = (
            AsyncTcpClient("127.0.0.1", server.wyoming_port),
            AsyncTcpClient("127.0.0.1", server.wyoming_port),
        )
        for client in (first, second):
            await client.connect()
            event = await describe(client)
            assert event is not None and Info.is_type(event.type)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.wyoming_port)
        refused = await asyncio.wait_for(read_all(reader), 10)
        writer.close()
        await first.disconnect()
        # Its slot comes back once the server has seen it go: retry until then.
        deadline = time.monotonic() + 10
        while True:
            async with AsyncTcpClient("127.0.0.1", server.wyoming_port) as late:
                answer = await describe(late)
            if (answer is not None and Info.is_type(answer.type)) or time.monotonic() > deadline:
                break
        await second.disconnect()
        return refused, answer

    refused, answer = asyncio.run(run())
    assert [e.type for e in refused] == ["error"] and Error.from_event(refused[0]).code == "too_many_connections"
    assert answer is not None and Info.is_type(answer.type), answer


def test_a_client_that_leaves_mid_request_gives_the_model_back(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The client leaves while its 3-minute utterance is decoded (after audio-stop), and while
    a live utterance is still being spoken: either way the request ends at once."""
    # Its own server: the worker goes on with the batch it had begun, which would take a
    # shared server's CPU from the tests after this one; stopping this one ends it.
    server: Server = make_server(BASE)
    with wave.open(io.BytesIO(make_long_clip(tmp_path, 12, rate=BUFFERED_RATE)), "rb") as w:
        long_pcm = w.readframes(w.getnframes())
    with wave.open(str(ASSETS / "fox.wav"), "rb") as w:
        fox, fox_rate = w.readframes(w.getnframes()), w.getframerate()

    async def leave_after(events: bytes) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", server.wyoming_port)
        writer.write(events)
        await writer.drain()
        await asyncio.to_thread(wait_for, lambda: server.model()["in_flight"] == 1, 60, 0.05, "the request")
        writer.close()
        await writer.wait_closed()

    whole = (
        frame("transcribe", {"language": "en"})
        + frame("audio-start", {"rate": BUFFERED_RATE, "width": 2, "channels": 1})
        + chunks(long_pcm, BUFFERED_RATE)
        + frame("audio-stop")
    )
    asyncio.run(leave_after(whole))
    left = time.monotonic()
    wait_for(lambda: server.model()["in_flight"] == 0, 5, what="the abandoned decode to be cancelled")
    print(f"lease back {time.monotonic() - left:.2f} s after the client left")
    # The worker stopped decoding it: the next request does not wait behind 3 minutes of audio.
    response = server.transcribe("short.wav")
    assert response.status_code == 200 and "kitchen" in response.json()["text"].lower()

    spoken = frame("transcribe", {"language": "en"}) + frame(
        "audio-start", {"rate": fox_rate, "width": 2, "channels": 1}
    )
    asyncio.run(leave_after(spoken + chunks(fox[: len(fox) // 2], fox_rate, 2048)))
    wait_for(lambda: server.model()["in_flight"] == 0, 5, what="the live session to end")
    assert "Traceback" not in server.log()
