"""The live connection loop's endings, on every interface that uses it, with no server.

A fake WebSocket, service and stream stand in for uvicorn and the worker, so the endings
the end-to-end tests cannot reach quickly (the idle timeout, the length limit, the model's
wind-down, a failed model) are pinned on the wire of both WebSocket protocols and Wyoming:
the finals first, then the error in the protocol's own format, then the close code.
"""

from __future__ import annotations

import asyncio
import base64
import json
import types
from collections.abc import MutableMapping
from typing import Any, Self

import pytest
from starlette.websockets import WebSocketState
from wyoming.event import Event

from common.protocol.live import Final, LiveEvent, LiveParams, Partial
from supervisor.failures import FailureKind, ServiceError
from supervisor.interfaces.http.live_websocket import LiveWebSocket
from supervisor.interfaces.http.realtime import RealtimeConnection
from supervisor.interfaces.live_connection import LiveConnection
from supervisor.interfaces.wyoming.events import AudioFormat, ChunkIn
from supervisor.interfaces.wyoming.transcript_stream import TranscriptStream

pytestmark = pytest.mark.quick

CRASH = ServiceError(FailureKind.CRASHED, "the model crashed", "model_crashed")
HANG = {"type": "hang"}  # the client sends nothing more


class FakeStream:
    """A live stream whose engine hears "hello" in any audio and says "hello world" at the end."""

    def __init__(self, log: list[Any], params: LiveParams, wind_down: bool, fail: bool) -> None:
        self.model, self.params, self.log = "tiny.en", params, log
        self._events: asyncio.Queue[LiveEvent | Exception | None] = asyncio.Queue()
        self._wind_down, self._fail, self._finished = wind_down, fail, False

    async def __aenter__(self) -> Self:
        self.log.append("lease")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self.log.append("release")

    async def queue_audio(self, pcm: bytes) -> None:
        self._events.put_nowait(Partial(text="hello wor", committed="hello", seq=1))
        if self._fail:
            self._events.put_nowait(CRASH)

    send_audio = queue_audio

    async def finish(self) -> None:
        if not self._finished:
            self._finished = True
            self._events.put_nowait(Final(text="hello world", start=0.0, end=1.0, seq=2, segments=[]))
            self._events.put_nowait(None)

    async def wanted_back(self) -> None:
        await asyncio.sleep(0.05 if self._wind_down else 3600)

    def __aiter__(self) -> FakeStream:
        return self

    async def __anext__(self) -> LiveEvent:
        event = await self._events.get()
        if event is None:
            raise StopAsyncIteration
        if isinstance(event, Exception):
            raise event
        return event


class FakeWebSocket:
    def __init__(self, messages: list[dict[str, Any]], log: list[Any]) -> None:
        self.scope: dict[str, Any] = {"subprotocols": [], "state": {}}
        self.headers: dict[str, str] = {}
        self.query_params = {"intent": "transcription"}
        self.client_state = WebSocketState.CONNECTED
        self._messages, self._log = iter(messages), log

    async def receive(self) -> MutableMapping[str, Any]:
        message = next(self._messages)
        if message is HANG:
            await asyncio.sleep(3600)
        return message

    async def send_json(self, body: dict[str, Any]) -> None:
        self._log.append(body)

    async def close(self, code: int) -> None:
        self._log.append(("close", code))
        self.client_state = WebSocketState.DISCONNECTED


def fake_service(log: list[Any], wind_down: bool = False, fail: bool = False) -> Any:
    return types.SimpleNamespace(
        choose=lambda pinned, named: named,
        knows=lambda name: name in (None, "tiny.en"),
        resolve=lambda name: "tiny.en",
        live=lambda model, params, interface: FakeStream(log, params, wind_down, fail),
        registry=types.SimpleNamespace(names=lambda: ["tiny.en"]),
    )


def audio(protocol: type[LiveConnection]) -> dict[str, Any]:
    """A tenth of a second of audio in the protocol's own message."""
    if protocol is LiveWebSocket:
        return {"type": "websocket.receive", "bytes": bytes(3200)}
    body = {"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(4800)).decode()}
    return {"type": "websocket.receive", "text": json.dumps(body)}


async def converse(
    protocol: type[LiveConnection], messages: list[dict[str, Any]], idle: float = 5, limit: float = 100, **stream: bool
) -> list[Any]:
    log: list[Any] = []
    server = types.SimpleNamespace(session_idle_timeout=idle, max_session_seconds=limit)
    settings: Any = types.SimpleNamespace(api_keys=(), server=server)
    websocket: Any = FakeWebSocket(messages, log)
    await asyncio.wait_for(protocol(websocket, fake_service(log, **stream), settings).run(), 10)
    return log


def error_code(body: dict[str, Any]) -> str:
    return str(body["code"] if "code" in body else body["error"]["code"])


def kinds(log: list[Any]) -> list[str]:
    """The log in short: message types, with an error's code, and the close code."""
    short = {"conversation.item.input_audio_transcription." + k: k for k in ("delta", "completed", "failed")}
    out: list[str] = []
    for entry in log:
        if isinstance(entry, dict):
            kind = short.get(entry["type"], str(entry["type"]))
            out.append(f"error {error_code(entry)}" if kind == "error" else kind)
        else:
            out.append(entry if isinstance(entry, str) else f"close {entry[1]}")
    return [k for k in out if k not in ("ready", "session.created", "input_audio_buffer.committed")]


BOTH = pytest.mark.parametrize("protocol", [LiveWebSocket, RealtimeConnection], ids=["stream", "realtime"])


def finals(protocol: type[LiveConnection]) -> list[str]:
    return ["partial", "final"] if protocol is LiveWebSocket else ["delta", "delta", "completed"]


@BOTH
async def test_an_idle_session_ends_with_its_finals_then_1000(protocol: type[LiveConnection]) -> None:
    log = await converse(protocol, [audio(protocol), HANG], idle=0.2)
    assert kinds(log) == ["lease", *finals(protocol), "error idle_timeout", "close 1000", "release"]
    waited = "audio" if protocol is LiveWebSocket else "event"
    assert f"no {waited} for 0.2 s: the session ended" in json.dumps(log)


async def test_a_realtime_session_idle_before_any_audio_closes_without_a_lease() -> None:
    log = await converse(RealtimeConnection, [HANG], idle=0.2)
    assert kinds(log) == ["error idle_timeout", "close 1000"]


@BOTH
async def test_a_session_past_its_length_ends_with_its_finals_then_1008(protocol: type[LiveConnection]) -> None:
    log = await converse(protocol, [audio(protocol), audio(protocol), HANG], limit=0.15)
    assert kinds(log)[-3:] == ["error session_too_long", "close 1008", "release"]
    assert kinds(log)[:-3] == ["lease", *finals(protocol)]
    name = "live" if protocol is LiveWebSocket else "realtime"
    assert f"a {name} session may last 0.15 s" in json.dumps(log)


@BOTH
async def test_a_model_wanted_back_ends_the_session_with_its_finals_then_1012(protocol: type[LiveConnection]) -> None:
    log = await converse(protocol, [audio(protocol), HANG], wind_down=True)
    assert kinds(log) == ["lease", *finals(protocol), "error model_unloading", "close 1012", "release"]


@BOTH
async def test_a_failed_model_closes_1011_and_realtime_fails_its_items(protocol: type[LiveConnection]) -> None:
    log = await converse(protocol, [audio(protocol), HANG], fail=True)
    failed = [] if protocol is LiveWebSocket else ["failed"]
    assert kinds(log) == ["lease", finals(protocol)[0], *failed, "release", "error model_crashed", "close 1011"]


async def test_wyoming_keeps_the_text_and_gives_the_model_back_when_it_is_wanted_back() -> None:
    log: list[Any] = []

    async def write(event: Event) -> None:
        log.append((event.type, (event.data or {}).get("text")))

    stream: Any = FakeStream(log, LiveParams(), wind_down=True, fail=False)
    transcript = TranscriptStream(stream, write, send_chunks=True, language="en")
    await transcript.add(ChunkIn(format=AudioFormat(rate=16000, width=2, channels=1), audio=bytes(3200)))
    await asyncio.sleep(0.2)  # the wind-down: a final for what was heard, and the model given back
    assert log == [("transcript-start", None), ("transcript-chunk", "hello"), ("transcript-chunk", " world"), "release"]
    assert await transcript.finish() == "hello world"
