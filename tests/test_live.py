"""Live transcription over `WS /v1/audio/transcriptions/stream`: a real server, real workers,
the real `websockets` client. Audio goes faster than real time except where time is the point."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import signal
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import ASSETS, Server, key_words_found, reference, shared_server, wait_for, words
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

FRAME = 3200  # 100 ms of 16 kHz 16-bit mono
SILENCE = b"\0\0" * 16000  # one second

#: The run's shared server (tests/conftest.py): tiny.en, no keys, TTL off, and half a second
#: for a session to finish when its model is unloaded.
live_server = shared_server


def pcm(name: str) -> bytes:
    with wave.open(str(ASSETS / f"{name}.wav"), "rb") as clip:
        assert clip.getframerate() == 16000 and clip.getnchannels() == 1 and clip.getsampwidth() == 2
        return clip.readframes(clip.getnframes())


def frames(audio: bytes) -> Iterator[bytes]:
    for i in range(0, len(audio), FRAME):
        yield audio[i : i + FRAME]


class Session:
    """What a client saw on one connection: every message, and how it was closed."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.close_code: int | None = None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]


async def talk(
    url: str,
    audio: bytes = b"",
    *,
    end: bool = True,
    before: list[Any] | None = None,
    after_audio: list[Any] | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
    pace: float = 0.0,
) -> Session:
    """Connect, send `before` (JSON or bytes), the audio in 100 ms frames, `after_audio`, then
    `end`; read everything until the server closes."""
    seen = Session()
    ws_url = url.replace("http://", "ws://") + "/v1/audio/transcriptions/stream" + (f"?{query}" if query else "")
    async with connect(ws_url, additional_headers=headers or {}, max_size=2**22) as ws:

        async def send() -> None:
            try:
                for item in before or []:
                    await ws.send(item if isinstance(item, bytes) else json.dumps(item))
                for frame in frames(audio):
                    await ws.send(frame)
                    if pace:
                        await asyncio.sleep(pace)  # paced: real-time audio, not event ordering
                for item in after_audio or []:
                    await ws.send(item if isinstance(item, bytes) else json.dumps(item))
                if end:
                    await ws.send(json.dumps({"type": "end"}))
            except ConnectionClosed:
                pass  # the server closed first (that is what some tests are about)

        sender = asyncio.create_task(send())
        try:
            async for message in ws:
                seen.messages.append(json.loads(message))
        except ConnectionClosed:
            pass
        seen.close_code = ws.close_code
        await sender
    return seen


def run(coro: Any) -> Session:
    return asyncio.run(asyncio.wait_for(coro, 120))


def assert_committed_never_changes(session: Session) -> None:
    """Within an utterance, each partial's committed text extends the previous one."""
    committed = ""
    for message in session.messages:
        if message["type"] == "partial":
            assert message["committed"].startswith(committed), (committed, message)
            assert message["text"].startswith(message["committed"])
            committed = message["committed"]
        elif message["type"] == "final":
            committed = ""


def test_partials_then_a_final_per_utterance(live_server: Server) -> None:
    # Paced: the engine offers partials while speech goes on, as it would live. At half real
    # time, so that a busy machine (the suite runs two test processes on two cores) still
    # has a partial decode back before the speaker's pause ends the utterance.
    seen = run(talk(live_server.url, pcm("fox") + SILENCE + pcm("short") + SILENCE, pace=0.2))
    assert seen.messages[0] == {"type": "ready", "model": "tiny.en", "sample_rate": 16000}
    finals = seen.of("final")
    assert len(finals) == 2, seen.messages
    assert key_words_found(finals[0]["text"], ["fox", "dog"]) and key_words_found(finals[1]["text"], ["kitchen"])
    first_final = seen.messages.index(finals[0])
    assert any(m["type"] == "partial" for m in seen.messages[:first_final]), "no partial before the first final"
    assert_committed_never_changes(seen)
    assert finals[0]["end"] <= finals[1]["start"] and finals[1]["end"] > finals[1]["start"]
    assert seen.close_code == 1000


def test_commit_forces_a_final_and_end_flushes_the_rest(live_server: Server) -> None:
    weather = pcm("weather")
    half = len(weather) // 2 // 2 * 2
    seen = run(talk(live_server.url, weather[:half], after_audio=[{"type": "commit"}, *frames(weather[half:])]))
    finals = seen.of("final")
    assert len(finals) == 2, seen.messages  # one at the commit, one for the rest at `end`
    assert len(words(finals[0]["text"])) >= 2 and len(words(finals[1]["text"])) >= 2
    assert seen.close_code == 1000


def test_config_first_and_word_timestamps(live_server: Server) -> None:
    seen = run(
        talk(
            live_server.url,
            pcm("fox") + SILENCE,
            before=[{"type": "config", "language": "en", "word_timestamps": True}],
        )
    )
    final = seen.of("final")[0]
    assert [w["word"].strip(" .,").lower() for w in final["words"]][:2] == words(reference("fox"))[:2]


@pytest.mark.parametrize(
    ("before", "query", "code", "error"),
    [
        ([b"\x01\x02\x03"], "", 1003, "bad_audio"),
        (["not json"], "", 1003, "invalid_message"),
        ([{"type": "dance"}], "", 1003, "invalid_message"),
        ([{"type": "config", "colour": "red"}], "", 1008, "invalid_parameter"),
        ([b"\0" * (256 * 1024 + 2)], "", 1009, "frame_too_large"),
        ([], "model=nope", 1008, "model_not_found"),
        ([], "sample_rate=1000", 1008, "invalid_parameter"),
    ],
)
def test_bad_input_gets_an_error_then_the_right_close(
    live_server: Server, before: list[Any], query: str, code: int, error: str
) -> None:
    seen = run(talk(live_server.url, before=before, query=query, end=False))
    errors = seen.of("error")
    assert errors and errors[-1]["code"] == error and errors[-1]["message"], seen.messages
    assert seen.close_code == code
    # Nothing else is disturbed: the next session works.
    assert live_server.transcribe("short.wav").status_code == 200


def test_config_after_audio_is_refused(live_server: Server) -> None:
    seen = run(
        talk(live_server.url, pcm("short")[:FRAME], after_audio=[{"type": "config", "language": "en"}], end=False)
    )
    assert seen.of("error")[-1]["code"] == "config_too_late" and seen.close_code == 1008


def test_keys_are_checked_header_or_query(keyed_server: Server) -> None:
    server = keyed_server  # "k1" among its keys
    refused = run(talk(server.url, end=False))
    assert refused.of("error")[0]["code"] == "invalid_api_key" and refused.close_code == 1008
    by_query = run(talk(server.url, pcm("short") + SILENCE, query="api_key=k1"))
    by_header = run(talk(server.url, pcm("short") + SILENCE, headers={"Authorization": "Bearer k1"}))
    assert by_query.of("final") and by_header.of("final")


def test_the_ttl_never_ends_a_worker_under_a_live_session(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server('[models."tiny.en"]\nsource = "bundled"\nttl = 1\n')
    # 3 s of real-time audio on a model whose TTL is 1 s: the session holds the worker.
    seen = run(talk(server.url, pcm("short") + SILENCE, pace=0.1))
    assert seen.of("final") and seen.close_code == 1000
    assert server.model()["unloads"] == {}
    wait_for(lambda: server.model()["state"] == "unloaded", 15, what="the TTL after the session")


def test_unload_drains_a_session_with_a_final_then_1012(live_server: Server) -> None:
    server = live_server  # session_drain_timeout = 0.5

    async def scenario() -> tuple[Session, httpx.Response]:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            talking = asyncio.create_task(talk(server.url, pcm("fox") + pcm("fox"), end=False, pace=0.1))
            await asyncio.to_thread(wait_for, lambda: server.model()["in_flight"] == 1, 30, 0.05, "the session")
            unload = await asyncio.wrap_future(
                pool.submit(server.client.post, "/v1/model/unload", params={"model": "tiny.en"})
            )
            return await talking, unload

    seen, unload = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert unload.status_code == 200 and unload.json()["unloaded"][0]["ended_by"] == "shutdown"
    assert seen.of("final"), "the speaker gets a final for what was heard"
    assert seen.messages[-1]["type"] == "error" and seen.messages[-1]["code"] == "model_unloading"
    assert seen.close_code == 1012
    assert server.model()["state"] == "unloaded"


def test_a_client_that_vanishes_frees_its_session(live_server: Server) -> None:
    async def vanish() -> None:
        ws_url = live_server.url.replace("http://", "ws://") + "/v1/audio/transcriptions/stream"
        async with connect(ws_url) as ws:
            await ws.recv()  # ready
            for frame in frames(pcm("weather")[: FRAME * 10]):
                await ws.send(frame)
        # closed without `end`

    asyncio.run(vanish())
    wait_for(lambda: live_server.model()["in_flight"] == 0, 15, what="the session's lease to come back")
    assert run(talk(live_server.url, pcm("short") + SILENCE)).of("final")


def test_shutdown_lets_a_session_finish_with_its_final(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(
        '[server]\nsession_drain_timeout = 0.5\n[models."tiny.en"]\nsource = "bundled"\nttl = -1\n'
    )

    async def scenario() -> Session:
        talking = asyncio.create_task(talk(server.url, pcm("fox") + pcm("fox"), end=False, pace=0.1))
        await asyncio.to_thread(wait_for, lambda: server.model()["in_flight"] == 1, 30, 0.05, "the session")
        server.proc.send_signal(signal.SIGTERM)
        return await talking

    seen = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert seen.of("final"), "the speaker gets a final for what was heard"
    assert seen.messages[-1]["code"] == "model_unloading" and seen.close_code == 1012
    server.proc.wait(30)
    assert "Application shutdown complete" in server.log()


def test_sessions_over_the_limit_are_told_to_come_back_later(one_session_server: Server) -> None:
    server = one_session_server  # max_live_sessions = 1
    wait_for(lambda: server.live_sessions() == 0, 10, what="the place of an earlier test's session to be free")

    async def scenario() -> Session:
        ws_url = server.url.replace("http://", "ws://") + "/v1/audio/transcriptions/stream"
        async with connect(ws_url) as first:
            assert json.loads(await first.recv())["type"] == "ready"
            return await talk(server.url, end=False)

    refused = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert refused.of("error")[0]["code"] == "too_many_sessions" and refused.close_code == 1013
    # The first client has hung up; once the server has seen it, the place is free again.
    wait_for(lambda: server.live_sessions() == 0, 10, what="the first session to end")
    later = asyncio.run(asyncio.wait_for(talk(server.url, pcm("short") + SILENCE), 120))
    assert later.of("final") and later.close_code == 1000, later.messages
