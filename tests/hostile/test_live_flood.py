"""Live clients that send audio far faster than real time: paced or refused, never a dead worker.

A client once sent 60 MB of 16 kHz PCM in 17 s to a live session: the worker's event loop
spent all its time taking frames, sent no heartbeat, and the supervisor killed it as hung,
with every other request on the model. Here the server runs a 3 s `heartbeat_timeout`, so
that failure shows within seconds, and a 1 s `http_header_timeout`, shorter than any of
these sessions (it once closed every WebSocket at that age). While a client floods, another
client's ordinary transcriptions on the same model must keep succeeding, and the worker must
be the same process at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import wave
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import websockets
from conftest import ASSETS, Server, record_figure, server_fixture, words
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error

CONFIG = """
[server]
heartbeat_interval = 0.2
heartbeat_timeout = 3
http_header_timeout = 1

[defaults]
ttl = -1

[models."tiny.en"]
source = "bundled"
"""

RATE = 16000
server = server_fixture(CONFIG)


def _pcm(name: str) -> bytes:
    with wave.open(str(ASSETS / name), "rb") as wav:
        assert wav.getframerate() == RATE and wav.getnchannels() == 1
        return wav.readframes(wav.getnframes())


def silence(seconds: float) -> bytes:
    return b"\0\0" * int(seconds * RATE)


#: The fox sentence and a pause (4.4 s); the weather report and a pause (9.9 s).
FOX = _pcm("fox.wav") + silence(1)
WEATHER = _pcm("weather.wav") + silence(1)


def seconds(pcm: bytes) -> float:
    return len(pcm) / (2 * RATE)


def worker_pid(server: Server) -> int:
    response = server.transcribe("fox.wav")
    assert response.status_code == 200, response.text
    return int(response.headers["x-asr-worker-pid"])


@contextlib.contextmanager
def watched(server: Server) -> Iterator[None]:
    """The block leaves the model's worker in place, and the supervisor killed no worker as hung."""
    pid, log_from = worker_pid(server), len(server.log())
    yield
    assert "no heartbeat" not in server.log()[log_from:]
    assert worker_pid(server) == pid, "the worker was replaced"


@contextlib.contextmanager
def other_client(server: Server) -> Iterator[list[tuple[int, str]]]:
    """Another client transcribing a file on the same model, again and again, while the
    block runs: what each request got (status, text)."""
    answers: list[tuple[int, str]] = []
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            response = server.client.post(
                "/v1/audio/transcriptions", files={"file": ("fox.wav", (ASSETS / "fox.wav").read_bytes())}
            )
            answers.append((response.status_code, response.json().get("text", response.text)))

    with ThreadPoolExecutor(1) as pool:
        running: Future[None] = pool.submit(loop)
        try:
            yield answers
        finally:
            done.set()
            running.result(timeout=60)


def assert_served(answers: list[tuple[int, str]]) -> None:
    assert answers, "the other client got no answer while the flood ran"
    for status, text in answers:
        assert status == 200, text
        assert "fox" in words(text), text


async def flood_websocket(server: Server, pcm: bytes, frame_ms: int = 20) -> tuple[list[dict[str, Any]], int | None]:
    """Send `pcm` as fast as the connection takes it, then `end`; every message back, and the close code."""
    url = f"ws://127.0.0.1:{server.port}/v1/audio/transcriptions/stream"
    size = RATE * frame_ms // 1000 * 2
    received: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=None) as ws:

        async def read() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for message in ws:
                    received.append(json.loads(message))

        reader = asyncio.create_task(read())
        with contextlib.suppress(websockets.ConnectionClosed):  # a refused client is closed mid-send
            for i in range(0, len(pcm), size):
                await ws.send(pcm[i : i + size])
            await ws.send(json.dumps({"type": "end"}))
        await asyncio.wait_for(reader, 120)
        return received, ws.close_code


def test_a_websocket_client_far_ahead_of_the_model_is_refused_and_nobody_else_notices(server: Server) -> None:
    """Two minutes of speech at full speed: `audio_too_fast`, close 1008; the worker lives on."""
    flood = (FOX + WEATHER) * 9  # 129 s, 4 MB
    with watched(server), other_client(server) as answers:
        started = time.monotonic()
        received, code = asyncio.run(flood_websocket(server, flood))
        refused_after = time.monotonic() - started
    errors = [m for m in received if m["type"] == "error"]
    assert code == 1008, (code, errors)
    assert [e["code"] for e in errors] == ["audio_too_fast"], errors
    assert "faster than" in errors[0]["message"]
    assert_served(answers)
    record_figure("live flood", "WebSocket: 129 s of audio at full speed refused after (s)", f"{refused_after:.1f}")


def test_a_websocket_burst_within_the_bound_keeps_every_word(server: Server) -> None:
    """Fourteen seconds of speech at once (a client catching up after a hiccup): held, paced
    to the worker, and every utterance comes back as a final, then a normal close."""
    flood = WEATHER + FOX
    with watched(server), other_client(server) as answers:
        started = time.monotonic()
        received, code = asyncio.run(flood_websocket(server, flood))
        took = time.monotonic() - started
    finals = [m for m in received if m["type"] == "final"]
    assert code == 1000, [m for m in received if m["type"] == "error"]
    text = words(" ".join(f["text"] for f in finals))
    assert text.count("garden") == 1 and text.count("fox") == 1, text
    assert finals[-1]["end"] > seconds(flood) - 3
    assert_served(answers)
    record_figure(
        "live flood", f"WebSocket: {seconds(flood):.0f} s of audio at once, all finals after (s)", f"{took:.1f}"
    )


def test_a_wyoming_client_far_faster_than_real_time_is_paced_and_loses_nothing(server: Server) -> None:
    """Three minutes and more (a sentence, a minute and a half of silence, the sentence again,
    the same silence, the sentence) in 20 ms chunks as fast as the socket takes them: the
    reads pause while the model catches up, and the transcript has every sentence."""
    flood = FOX + silence(90) + FOX + silence(90) + FOX  # 6.2 MB
    chunk = 640  # 20 ms

    async def send() -> tuple[str, float]:
        async with AsyncTcpClient("127.0.0.1", server.wyoming_port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            started = time.monotonic()
            for i in range(0, len(flood), chunk):
                await client.write_event(AudioChunk(RATE, 2, 1, flood[i : i + chunk]).event())
            await client.write_event(AudioStop().event())
            while True:
                event = await asyncio.wait_for(client.read_event(), 120)
                assert event is not None, "the server closed the connection"
                assert not Error.is_type(event.type), event.data
                if Transcript.is_type(event.type):
                    return Transcript.from_event(event).text, time.monotonic() - started

    with watched(server), other_client(server) as answers:
        text, took = asyncio.run(send())
    found = words(text)
    assert found.count("fox") == 3, text
    assert_served(answers)
    record_figure(
        "live flood",
        f"Wyoming: {seconds(flood):.0f} s of audio at full speed, paced, transcript after (s)",
        f"{took:.1f}",
    )
