"""OpenAI Realtime transcription sessions (`WS /v1/realtime?intent=transcription`): a real
server and workers, the official `openai` SDK's realtime client pointed at it with only
`base_url` changed, and a raw `websockets` client for the beta shape and hostile events."""

from __future__ import annotations

import asyncio
import base64
import json
import wave
from typing import Any

import numpy as np
import pytest
from conftest import ASSETS, Server, key_words_found, keyed_server, resample_pcm16, wait_for
from openai import AsyncOpenAI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

KEY = "sk-realtime-test"
RATE = 24000
CHUNK = 4800  # 100 ms of 24 kHz 16-bit mono
SILENCE = b"\0\0" * RATE  # one second

#: The run's keyed server (tests/conftest.py), KEY among its keys; tiny.en its default model.
realtime_server = keyed_server

DELTA = "conversation.item.input_audio_transcription.delta"
COMPLETED = "conversation.item.input_audio_transcription.completed"


def clip(name: str, rate: int = RATE) -> bytes:
    with wave.open(str(ASSETS / f"{name}.wav"), "rb") as f:
        assert f.getnchannels() == 1 and f.getsampwidth() == 2
        return resample_pcm16(f.readframes(f.getnframes()), f.getframerate(), rate)


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


def ga_session(turn_detection: dict[str, Any] | None, **input_fields: Any) -> dict[str, Any]:
    return {
        "type": "transcription",
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                "turn_detection": turn_detection,
                **input_fields,
            }
        },
    }


def sdk(server: Server, key: str = KEY) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key)


async def events_until(connection: Any, want: str, count: int = 1) -> list[Any]:
    """Every server event up to and including the `count`-th of type `want`."""
    seen: list[Any] = []
    async for event in connection:
        seen.append(event)
        if sum(1 for e in seen if e.type == want) == count:
            return seen
    raise AssertionError(f"the connection closed before {count} {want}: {[e.type for e in seen]}")


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 90))


def test_sdk_server_vad_true_deltas_then_completed_for_two_utterances(realtime_server: Server) -> None:
    async def scenario() -> list[Any]:
        async with sdk(realtime_server).realtime.connect(extra_query={"intent": "transcription"}) as conn:
            first = await conn.recv()
            assert first.type == "session.created"
            vad = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}
            await conn.session.update(session=ga_session(vad))  # type: ignore[arg-type]
            updated = await events_until(conn, "session.updated")
            assert updated[-1].session.audio.input.turn_detection.silence_duration_ms == 500
            audio = clip("fox") + SILENCE + clip("short") + SILENCE
            for at in range(0, len(audio), CHUNK):  # real time: the engine shows words as they are spoken
                await conn.input_audio_buffer.append(audio=b64(audio[at : at + CHUNK]))
                await asyncio.sleep(0.1)  # pacing the audio, not ordering events
            return await events_until(conn, COMPLETED, 2)

    seen = run(scenario())
    completed = [e for e in seen if e.type == COMPLETED]
    # Not "fox": in-process faster-whisper (tiny.en, beam 5) reads the clip cut as a live final
    # cuts it (0.3 s before the speech, 0.25 s into the pause) as "round-fark" too.
    assert key_words_found(completed[0].transcript, ["quick", "dog"]) == ["quick", "dog"], completed[0]
    assert key_words_found(completed[1].transcript, ["kitchen", "lights"]) == ["kitchen", "lights"], completed[1]
    assert completed[0].item_id != completed[1].item_id
    assert completed[0].usage.type == "duration" and 1.0 < completed[0].usage.seconds < 5.0
    assert_deltas_spell_transcripts(seen)
    for item in completed:
        events = [e.type for e in seen if getattr(e, "item_id", None) == item.item_id]
        assert events[0] == "input_audio_buffer.speech_started" and events[-1] == COMPLETED, events
        assert events.count("input_audio_buffer.committed") == 1
    # Deltas may come while the speaker talks (words the engine is sure of), and never more than
    # the transcript: how many come early depends on the model's certainty (tiny.en is rarely
    # sure of a first word), so the test pins the contract, not the timing.
    committed = [e for e in seen if e.type == "input_audio_buffer.committed"]
    assert committed[0].previous_item_id is None and committed[1].previous_item_id == committed[0].item_id
    started = [e for e in seen if e.type == "input_audio_buffer.speech_started"]
    assert started[0].audio_start_ms < 1000 and started[1].audio_start_ms > 3000


def assert_deltas_spell_transcripts(seen: list[Any]) -> None:
    """OpenAI's contract: an item's deltas, joined, are its `completed.transcript` (a final
    begins with the words committed before it, and the last delta carries the rest)."""
    for item in [e for e in seen if e.type == COMPLETED]:
        deltas = [e.delta for e in seen if e.type == DELTA and e.item_id == item.item_id]
        assert "".join(deltas) == item.transcript, (deltas, item.transcript)


def test_sdk_manual_commits_one_item_per_commit_pauses_included(realtime_server: Server) -> None:
    async def scenario() -> list[Any]:
        async with sdk(realtime_server).realtime.connect(extra_query={"intent": "transcription"}) as conn:
            await conn.session.update(session=ga_session(None))  # type: ignore[arg-type]
            await conn.input_audio_buffer.append(audio=b64(clip("fox") + SILENCE + clip("short")))
            await conn.input_audio_buffer.commit()
            await events_until(conn, COMPLETED)
            await conn.input_audio_buffer.append(audio=b64(clip("short") + SILENCE[: RATE // 2]))
            await conn.input_audio_buffer.commit()
            return await events_until(conn, COMPLETED)

    seen = run(scenario())
    completed = [e for e in seen if e.type == COMPLETED]
    # The second commit's item; the first one (fox + a pause + short) was one item too.
    assert key_words_found(completed[0].transcript, ["kitchen", "lights"]) == ["kitchen", "lights"]
    assert "fox" not in completed[0].transcript.lower()
    assert not [e for e in seen if e.type.startswith("input_audio_buffer.speech")], "no VAD events in manual mode"
    assert_deltas_spell_transcripts(seen)


def test_sdk_manual_commit_spans_a_pause_and_clear_drops_audio(realtime_server: Server) -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        async with sdk(realtime_server).realtime.connect(extra_query={"intent": "transcription"}) as conn:
            await conn.session.update(session=ga_session(None))  # type: ignore[arg-type]
            await conn.input_audio_buffer.append(audio=b64(clip("fox") + SILENCE + clip("short")))
            await conn.input_audio_buffer.commit()
            whole = await events_until(conn, COMPLETED)
            await conn.input_audio_buffer.append(audio=b64(clip("weather")))
            await conn.input_audio_buffer.clear()
            await conn.input_audio_buffer.append(audio=b64(clip("short")))
            await conn.input_audio_buffer.commit()
            return whole, await events_until(conn, COMPLETED)

    whole, after_clear = run(scenario())
    transcript = next(e for e in whole if e.type == COMPLETED).transcript
    # Both clips' words in one item ("fox" itself is one tiny.en misreads as "round-fark" on some CPUs).
    assert key_words_found(transcript, ["quick", "lazy", "kitchen"]) == ["quick", "lazy", "kitchen"], transcript
    assert "input_audio_buffer.cleared" in [e.type for e in after_clear]
    cleared = next(e for e in after_clear if e.type == COMPLETED).transcript
    assert key_words_found(cleared, ["kitchen"]) and not key_words_found(cleared, ["weather", "garden", "sunny"]), (
        cleared
    )


def raw(server: Server, **kwargs: Any) -> connect:
    return connect(server.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription", **kwargs)


async def next_of(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        event = json.loads(await ws.recv())
        if event["type"] == kind:
            return event


def test_bad_events_get_openai_errors_and_the_session_goes_on(realtime_server: Server) -> None:
    bad: list[tuple[Any, str, str | None]] = [
        ("not json", "invalid_json", None),
        ({"type": "response.create"}, "invalid_event_type", "type"),
        ({"type": "input_audio_buffer.append", "audio": "%%% not base64"}, "invalid_value", "audio"),
        ({"type": "input_audio_buffer.append", "audio": b64(b"\1\2\3")}, "invalid_value", "audio"),
        ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty", None),
        (
            {
                "type": "session.update",
                "session": {
                    "type": "transcription",
                    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 44100}}},
                },
            },
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        (
            {
                "type": "session.update",
                "session": ga_session(None) | {"audio": {"input": {"transcription": {"model": "nope"}}}},
            },
            "invalid_value",
            "session.audio.input.transcription.model",
        ),
    ]

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        errors = []
        async with raw(realtime_server, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            await next_of(ws, "session.created")
            for i, (event, _, _) in enumerate(bad):
                if isinstance(event, dict):
                    event = json.dumps(event | {"event_id": f"bad-{i}"})
                await ws.send(event)
                errors.append(await next_of(ws, "error"))
            await ws.send(json.dumps({"type": "session.update", "session": ga_session(None)}))
            await next_of(ws, "session.updated")
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": b64(clip("short"))}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            return errors, await next_of(ws, COMPLETED)

    errors, completed = run(scenario())
    for (event, code, param), error in zip(bad, errors, strict=True):
        body = error["error"]
        assert (body["type"], body["code"], body["param"]) == ("invalid_request_error", code, param), (event, body)
        assert body["message"]
    assert errors[1]["error"]["event_id"] == "bad-1"
    assert key_words_found(completed["transcript"], ["kitchen"])


def test_keys_bearer_and_browser_subprotocol(realtime_server: Server) -> None:
    async def scenario() -> tuple[Any, int | None, str, str | None]:
        async with sdk(realtime_server, key="sk-wrong").realtime.connect(extra_query={"intent": "transcription"}) as c:
            refused = await c.recv()
        async with raw(realtime_server) as ws:
            with pytest.raises(ConnectionClosed):
                while True:
                    await ws.recv()
            anonymous = ws.close_code
        offered = ["realtime", f"openai-insecure-api-key.{KEY}"]
        async with raw(realtime_server, subprotocols=offered) as ws:  # type: ignore[arg-type]
            created = json.loads(await ws.recv())["type"]
            return refused, anonymous, created, ws.subprotocol

    refused, anonymous, created, protocol = run(scenario())
    assert refused.type == "error" and refused.error.code == "invalid_api_key"
    assert anonymous == 1008
    assert created == "session.created" and protocol == "realtime"


def ulaw(pcm16: bytes) -> bytes:
    """G.711 μ-law encoding (the standard's, as audioop did), for the test's telephone audio."""
    x = np.frombuffer(pcm16, dtype="<i2").astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def test_beta_shape_with_telephone_audio(realtime_server: Server) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with raw(realtime_server, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            await next_of(ws, "session.created")
            session = {
                "input_audio_format": "g711_ulaw",
                "input_audio_transcription": {"model": "whisper-1", "language": "en"},
                "turn_detection": None,
            }
            await ws.send(json.dumps({"type": "transcription_session.update", "session": session}))
            updated = await next_of(ws, "transcription_session.updated")
            await ws.send(
                json.dumps({"type": "input_audio_buffer.append", "audio": b64(ulaw(clip("weather-8k", 8000)))})
            )
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            return updated, await next_of(ws, COMPLETED)

    updated, completed = run(scenario())
    assert updated["session"]["input_audio_format"] == "g711_ulaw" and updated["session"]["turn_detection"] is None
    assert key_words_found(completed["transcript"], ["weather", "garden"]) == ["weather", "garden"], completed


def test_a_session_over_max_live_sessions_is_told_to_come_back_later(one_session_server: Server) -> None:
    """The Realtime endpoint shares the live sessions' cap: the place is taken at the first
    audio, and a session over the cap gets an `error` event, then close 1013."""
    server = one_session_server
    wait_for(lambda: server.live_sessions() == 0, 10, what="the place of an earlier test's session to be free")
    append = {"type": "input_audio_buffer.append", "audio": b64(SILENCE[:CHUNK])}

    async def scenario() -> tuple[dict[str, Any], int | None]:
        async with raw(server) as first, raw(server) as second:
            await next_of(first, "session.created")
            await first.send(json.dumps(append))
            await first.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await next_of(first, "input_audio_buffer.committed")  # the first holds the only place now
            await next_of(second, "session.created")
            await second.send(json.dumps(append))
            error = await next_of(second, "error")
            with pytest.raises(ConnectionClosed):
                await next_of(second, "never")
            return error, second.close_code

    error, code = run(scenario())
    assert error["error"]["code"] == "too_many_sessions", error
    assert code == 1013
