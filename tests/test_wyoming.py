"""Home Assistant's Wyoming protocol, spoken by the `wyoming` package's own client."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path

import psutil
import pytest
from conftest import ASSETS, Server, key_words_found, server_fixture, wait_for, worker_pids
from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info

FOX_KEYS = ["quick", "brown", "fox", "over", "lazy"]

CONFIG = """
[server]
default_model = "tiny.en"
[defaults]
ttl = -1
[models."tiny.en"]
source = "bundled"
description = "Whisper tiny.en"
[models."kitchen"]
source = "bundled"
description = "same weights, other name"
"""


server = server_fixture(CONFIG)


def pcm(name: str) -> tuple[bytes, int]:
    with wave.open(str(ASSETS / f"{name}.wav"), "rb") as w:
        return w.readframes(w.getnframes()), w.getframerate()


async def ha_transcribe(
    port: int,
    audio: bytes,
    rate: int = 16000,
    channels: int = 1,
    *,
    transcribe: Transcribe | None = None,
    chunk_bytes: int = 2048,
) -> list[Event]:
    """Home Assistant's sequence: transcribe, audio-start, chunks, audio-stop, read until transcript."""
    events: list[Event] = []
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event((transcribe or Transcribe(language="en")).event())
        await client.write_event(AudioStart(rate=rate, width=2, channels=channels).event())
        for i in range(0, len(audio), chunk_bytes):
            await client.write_event(
                AudioChunk(rate=rate, width=2, channels=channels, audio=audio[i : i + chunk_bytes]).event()
            )
        await client.write_event(AudioStop().event())
        while True:
            event = await asyncio.wait_for(client.read_event(), 60)
            if event is None:
                break
            events.append(event)
            if Transcript.is_type(event.type) or Error.is_type(event.type):
                break
    return events


def transcript(events: list[Event]) -> str:
    final = [e for e in events if Transcript.is_type(e.type)]
    assert len(final) == 1, [e.type for e in events]
    return Transcript.from_event(final[0]).text


def test_describe_answers_fast_without_loading_a_model(server: Server) -> None:
    async def describe() -> tuple[Info, float]:
        started = time.monotonic()
        async with AsyncTcpClient("127.0.0.1", server.wyoming_port) as client:
            await client.write_event(Describe().event())
            event = await asyncio.wait_for(client.read_event(), 1.0)  # Home Assistant's timeout
        assert event is not None and Info.is_type(event.type)
        return Info.from_event(event), time.monotonic() - started

    info, elapsed = asyncio.run(describe())
    assert elapsed < 1.0
    assert worker_pids(server.pid) == []  # describe never loads a model
    [program] = info.asr
    assert program.name == "asr-supervisor" and program.supports_transcript_streaming
    models = {m.name: m for m in program.models}
    assert set(models) == {"tiny.en", "kitchen"}
    assert models["tiny.en"].installed and models["tiny.en"].languages == ["en"]
    assert models["kitchen"].description == "same weights, other name"


def test_home_assistant_sequence_transcribes(server: Server) -> None:
    audio, rate = pcm("fox")
    events = asyncio.run(ha_transcribe(server.wyoming_port, audio, rate))
    text = transcript(events)
    assert len(key_words_found(text, FOX_KEYS)) >= 4, text
    # It streamed: transcript-start and chunks came before the transcript, transcript-stop after.
    types = [e.type for e in events]
    assert types[0] == TranscriptStart().event().type and TranscriptChunk(text="").event().type in types
    assert server.model()["requests"] >= 1 and server.model()["in_flight"] == 0


def test_a_client_without_transcribe_gets_the_default_model_and_no_streaming(server: Server) -> None:
    audio, rate = pcm("short")

    async def run() -> list[Event]:
        events = []
        async with AsyncTcpClient("127.0.0.1", server.wyoming_port) as client:
            await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
            await client.write_event(AudioChunk(rate=rate, width=2, channels=1, audio=audio).event())
            await client.write_event(AudioStop().event())
            events.append(await asyncio.wait_for(client.read_event(), 60))
        return events

    events = asyncio.run(run())
    assert "kitchen" in transcript(events).lower()


@pytest.mark.parametrize(
    ("clip", "rate", "channels", "keys"),
    [
        ("weather-8k", 8000, 1, ["morning", "weather", "sunny", "warm", "garden", "dinner"]),
        ("fox-22k", 22050, 1, FOX_KEYS),
        ("short-44k-stereo", 44100, 2, ["turn", "kitchen", "lights"]),
    ],
)
def test_any_rate_and_channel_count_is_converted(
    server: Server, clip: str, rate: int, channels: int, keys: list[str]
) -> None:
    with wave.open(str(ASSETS / f"{clip}.wav"), "rb") as w:  # made with sox (scripts/make-clips)
        assert (w.getframerate(), w.getnchannels()) == (rate, channels)
        audio = w.readframes(w.getnframes())
    text = transcript(asyncio.run(ha_transcribe(server.wyoming_port, audio, rate, channels)))
    assert len(key_words_found(text, keys)) >= len(keys) - 1, f"{rate} Hz x{channels}: {text!r}"


def test_model_chosen_by_name_and_unknown_name_is_an_error(server: Server) -> None:
    audio, rate = pcm("short")
    events = asyncio.run(
        ha_transcribe(server.wyoming_port, audio, rate, transcribe=Transcribe(name="kitchen", language="en"))
    )
    assert "lights" in transcript(events).lower()
    assert server.model("kitchen")["state"] == "ready"

    events = asyncio.run(ha_transcribe(server.wyoming_port, audio, rate, transcribe=Transcribe(name="nope")))
    assert Error.is_type(events[-1].type)
    error = Error.from_event(events[-1])
    assert error.code == "model_not_found" and "nope" in error.text


def test_empty_audio_gives_an_empty_transcript(server: Server) -> None:
    assert transcript(asyncio.run(ha_transcribe(server.wyoming_port, b""))) == ""


def test_many_connections_at_once(server: Server) -> None:
    audio, rate = pcm("fox")
    short, _ = pcm("short")

    async def run() -> list[list[Event]]:
        return await asyncio.gather(*(ha_transcribe(server.wyoming_port, a, rate) for a in [audio, short] * 3))

    results = asyncio.run(run())
    for i, events in enumerate(results):
        text = transcript(events).lower()
        assert ("fox" in text) if i % 2 == 0 else ("kitchen" in text), text


def test_wyoming_request_loads_the_worker_and_the_ttl_ends_it(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server('[defaults]\nttl = 2\n[models."tiny.en"]\nsource = "bundled"\n')
    audio, rate = pcm("short")
    assert "kitchen" in transcript(asyncio.run(ha_transcribe(server.wyoming_port, audio, rate))).lower()
    pid = server.model()["pid"]
    assert psutil.pid_exists(pid)
    wait_for(lambda: server.model()["state"] == "unloaded", 15, what="TTL unload")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_no_wyoming_flag_and_unix_socket(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server("[defaults]\nttl = -1\n", "--no-wyoming")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.wyoming_port), timeout=2)

    path = tmp_path / "wyoming.sock"
    make_server("[defaults]\nttl = -1\n", "--wyoming-uri", f"unix://{path}")

    async def describe() -> Event | None:
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(json.dumps({"type": "describe"}).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 2)
        writer.close()
        return json.loads(line)

    assert asyncio.run(describe())["type"] == "info"


WER_BOUND = 0.25  # tiny.en on our espeak clips scores about 5-10%


def test_wyoming_bench_word_error_rate(server: Server, tmp_path: Path) -> None:
    bench = shutil.which("wyoming-bench") or str(Path(sys.executable).parent / "wyoming-bench")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("fox", "short", "weather"):
        shutil.copy(ASSETS / f"{name}.wav", corpus)
        shutil.copy(ASSETS / f"{name}.txt", corpus)
    out = subprocess.run(
        [
            bench,
            "stt",
            f"127.0.0.1:{server.wyoming_port}",
            "--corpus",
            str(corpus),
            "--mode",
            "both",
            "--rounds",
            "1",
            "--warmup",
            "0",
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    wers = [float(w) / 100 for w in re.findall(r"WER=([\d.]+)%", out.stdout)]
    assert wers, out.stdout
    assert "NOT SUPPORTED" not in out.stdout  # streaming mode ran too
    assert max(wers) <= WER_BOUND, out.stdout


def test_zeroconf_announcement_describes_the_wyoming_server() -> None:
    # Built, not sent: registering would multicast to the LAN, and tests stay on 127.0.0.1.
    from supervisor.interfaces.wyoming.discovery import SERVICE_TYPE, Announcer, default_name

    announcer = Announcer(port=10300, host="127.0.0.1", name="kitchen-asr")
    info = announcer.info
    assert info.type == SERVICE_TYPE == "_wyoming._tcp.local."
    assert info.name == "kitchen-asr._wyoming._tcp.local."
    assert info.port == 10300 and info.parsed_addresses() == ["127.0.0.1"]
    assert default_name().startswith("asr-supervisor-") and default_name() == default_name()


def test_a_silent_connection_is_closed_after_the_idle_timeout(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server("[server]\nwyoming_idle_timeout = 1\n[defaults]\nttl = -1\n")
    with socket.create_connection(("127.0.0.1", server.wyoming_port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server, not by our 10 s timeout
        assert time.monotonic() - started < 5
    text = transcript(asyncio.run(ha_transcribe(server.wyoming_port, *pcm("short"))))
    assert "kitchen" in text.lower()


def test_words_committed_while_the_user_speaks_begin_the_transcript(server: Server) -> None:
    """A satellite sends audio in real time: the utterance is decoded as it comes, words the
    engine is sure of come back as transcript-chunks (never retracted: the transcript begins
    with them), and the transcript follows audio-stop as soon as the final (decoded during
    the silence) is in."""
    audio, rate = pcm("weather")
    audio += b"\0\0" * rate + pcm("short")[0]  # a pause: two utterances for the engine, one for Wyoming
    audio += b"\0\0" * (rate * 7 // 10)  # the satellite's own 0.7 s of trailing silence
    step = rate // 10 * 2  # 100 ms

    async def run() -> tuple[list[tuple[float, Event]], float, float]:
        seen: list[tuple[float, Event]] = []
        async with AsyncTcpClient("127.0.0.1", server.wyoming_port) as client:

            async def read() -> None:
                while (event := await asyncio.wait_for(client.read_event(), 60)) is not None:
                    seen.append((time.monotonic(), event))
                    if Transcript.is_type(event.type) or Error.is_type(event.type):
                        return

            reader = asyncio.create_task(read())
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
            for i in range(0, len(audio), step):
                await client.write_event(AudioChunk(rate=rate, width=2, channels=1, audio=audio[i : i + step]).event())
                await asyncio.sleep(0.1)  # paced: real-time audio, not event ordering
            stopped = time.monotonic()
            await client.write_event(AudioStop().event())
            await reader
            return seen, stopped, time.monotonic()

    seen, stopped, done = asyncio.run(run())
    chunk_type, start_type = TranscriptChunk(text="").event().type, TranscriptStart().event().type
    assert seen[0][1].type == start_type
    text = transcript([e for _, e in seen])
    assert key_words_found(text, ["weather", "kitchen"]) == ["weather", "kitchen"], text
    chunks = [TranscriptChunk.from_event(e).text for t, e in seen if e.type == chunk_type]
    # Chunks are never retracted: joined, they are the transcript (the rest of the final
    # follows the committed words as a last chunk).
    assert "".join(chunks) == text, (chunks, text)
    early = sum(1 for t, e in seen if t < stopped and e.type == chunk_type)
    print(f"{early} of {len(chunks)} chunks before audio-stop")
    print(f"audio-stop → transcript: {done - stopped:.3f} s")


def test_an_unload_does_not_wait_for_an_audio_stop_that_never_comes(shared_server: Server) -> None:
    """A satellite that streams and never says audio-stop holds its model only for the drain time."""
    srv = shared_server  # session_drain_timeout = 0.5
    audio, rate = pcm("fox")

    async def run() -> tuple[dict[str, object], list[Event]]:
        async with AsyncTcpClient("127.0.0.1", srv.wyoming_port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
            for i in range(0, len(audio), 3200):
                await client.write_event(AudioChunk(rate=rate, width=2, channels=1, audio=audio[i : i + 3200]).event())
            await asyncio.to_thread(wait_for, lambda: srv.model()["in_flight"] == 1, 30, 0.05, "the live utterance")
            unload = await asyncio.to_thread(srv.client.post, "/v1/model/unload", params={"model": "tiny.en"})
            await client.write_event(AudioStop().event())  # late: the model is already gone
            events = []
            while (event := await asyncio.wait_for(client.read_event(), 60)) is not None:
                events.append(event)
                if Transcript.is_type(event.type) or Error.is_type(event.type):
                    break
        return unload.json(), events

    report, events = asyncio.run(run())
    assert report["unloaded"][0]["ended_by"] == "shutdown"
    assert len(key_words_found(transcript(events), FOX_KEYS)) >= 4  # what was heard is still transcribed
