"""`WS /v1/audio/transcriptions/stream`: live transcription over a WebSocket.

The client sends 16-bit little-endian mono PCM as binary frames (and optionally JSON text
frames: `config` before the first audio, `commit`, `end`); the server sends `ready`, then
`partial`s while people speak and a `final` per utterance, and `error` before any close
that is not a normal end. This module only speaks that wire: the session itself is the
service's `LiveStream`, and the words come from the worker's live engine.

Close codes: 1000 normal end (after `end`, or an idle/length limit, with its final first);
1003 bad data (odd-length PCM, a text frame that is not a known message); 1008 refused
(bad key, unknown model, bad parameter, a session past `max_session_seconds`, audio sent
so much faster than real time that the session is 30 s ahead of the model); 1009 a
frame over the size cap; 1011 the model failed; 1012 the model is being unloaded or the
server is stopping (after `session_drain_timeout` seconds and a final for what was heard);
1013 try again later (the model cannot load now, or too many live sessions).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import msgspec
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from common.protocol.live import Final, LiveEvent, LiveParams, Partial, SpeechStarted, SpeechStopped
from supervisor.config import Settings
from supervisor.failures import FailureKind, ServiceError
from supervisor.interfaces.http.auth import bearer_token, key_matches
from supervisor.interfaces.http.model_path import pinned_model
from supervisor.live_stream import LiveStream
from supervisor.service import TranscriptionService

log = logging.getLogger("asr.live")

router = APIRouter()

#: The largest binary frame accepted: about 2.7 s of 48 kHz audio. Clients send 20-200 ms frames.
MAX_FRAME_BYTES = 256 * 1024
#: `config` keys a client may set (the rest of LiveParams is the server's business).
CONFIG_KEYS = frozenset({"language", "prompt", "sample_rate", "end_silence_ms", "word_timestamps"})

_CLOSE_FOR_KIND = {
    FailureKind.BAD_AUDIO: 1003,
    FailureKind.BAD_PARAMETER: 1008,
    FailureKind.TOO_LARGE: 1009,
    FailureKind.UNKNOWN_MODEL: 1008,
    FailureKind.UNAVAILABLE: 1013,
    FailureKind.CRASHED: 1011,
    FailureKind.INTERNAL: 1011,
}


class Close(Exception):
    """How a connection ends: a close code and, unless it is a normal end, the error sent first."""

    def __init__(self, code: int, error: str | None = None, message: str = "") -> None:
        super().__init__(message or error or str(code))
        self.code = code
        self.error = error
        self.message = message

    @classmethod
    def for_failure(cls, exc: ServiceError) -> Close:
        return cls(_CLOSE_FOR_KIND[exc.kind], exc.code, exc.message)


@router.websocket("/v1/audio/transcriptions/stream")
async def live_transcription(websocket: WebSocket) -> None:
    await websocket.accept()
    await LiveConnection(websocket, websocket.app.state.service, websocket.app.state.settings).run()


class LiveConnection:
    """One client's connection: flat dispatch of its frames, relay of its session's events."""

    def __init__(self, websocket: WebSocket, service: TranscriptionService, settings: Settings) -> None:
        self._ws = websocket
        self._service = service
        self._settings = settings
        self._seconds = 0.0  # of audio received
        self._ending: Close | None = None  # how to close once the last final is out

    async def run(self) -> None:
        try:
            params, named = self._check_request()
            model = self._service.choose(pinned_model(self._ws.scope), named)
            async with self._service.live(model, params, interface="stream") as stream:
                await self._send({"type": "ready", "model": stream.model, "sample_rate": params.sample_rate})
                await self._serve(stream)
        except Close as close:
            await self._close(close)
        except ServiceError as exc:
            await self._close(Close.for_failure(exc))
        except (WebSocketDisconnect, OSError):  # uvicorn's ClientDisconnected is an OSError
            pass  # the client went away: the stream was aborted on the way out

    def _check_request(self) -> tuple[LiveParams, str | None]:
        query = self._ws.query_params
        token = bearer_token(self._ws.headers.get("authorization", "")) or query.get("api_key")
        if not key_matches(token, self._settings.api_keys):
            raise Close(
                1008,
                "invalid_api_key",
                "Incorrect API key provided: send 'Authorization: Bearer <key>' or, from a browser, '?api_key=<key>'.",
            )
        fields = {k: v for k, v in query.items() if k in CONFIG_KEYS}
        return _params(fields, LiveParams()), query.get("model")

    async def _serve(self, stream: LiveStream) -> None:
        relay = asyncio.create_task(self._relay(stream))
        receiver = asyncio.create_task(self._receive(stream))
        watcher = asyncio.create_task(self._watch_wind_down(stream))
        try:
            done, _ = await asyncio.wait({relay, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done and receiver.result() == "disconnected":
                return
            await relay  # the last final(s), then the stream's end
            await self._close(self._ending or Close(1000))
        finally:
            for task in (relay, receiver, watcher):
                task.cancel()
            await asyncio.gather(relay, receiver, watcher, return_exceptions=True)

    async def _relay(self, stream: LiveStream) -> None:
        async for event in stream:
            await self._send(render(event, stream.params.word_timestamps))

    async def _receive(self, stream: LiveStream) -> str:
        """Feed the client's frames to the stream; says how reading ended."""
        idle = self._settings.server.session_idle_timeout
        while True:
            try:
                async with asyncio.timeout(idle):
                    message = await self._ws.receive()
            except TimeoutError:
                await self._finish(stream, Close(1000, "idle_timeout", f"no audio for {idle:g} s: the session ended"))
                return "finishing"
            if message["type"] == "websocket.disconnect":
                return "disconnected"
            if message.get("bytes") is not None:
                if await self._audio(stream, message["bytes"]):
                    return "finishing"
            elif message.get("text") is not None and await self._command(stream, message["text"]):
                return "finishing"

    async def _audio(self, stream: LiveStream, pcm: bytes) -> bool:
        """Pass one PCM frame on; True once the session is over its length limit (and finishing)."""
        if len(pcm) > MAX_FRAME_BYTES:
            raise Close(1009, "frame_too_large", f"audio frames may be at most {MAX_FRAME_BYTES} bytes")
        if len(pcm) % 2:
            raise Close(1003, "bad_audio", "audio frames are 16-bit samples: an even number of bytes")
        self._seconds += len(pcm) / (2 * stream.params.sample_rate)
        limit = self._settings.server.max_session_seconds
        if self._seconds > limit:
            await self._finish(stream, Close(1008, "session_too_long", f"a live session may last {limit:g} s"))
            return True
        # Never waits: a client this connection stopped reading would find its keepalive pings
        # stuck behind its own audio and give up. A client too far ahead is refused instead.
        await stream.queue_audio(pcm)
        return False

    async def _command(self, stream: LiveStream, text: str) -> bool:
        """One JSON text frame; True once the client said `end`."""
        try:
            message = json.loads(text)
            kind = message["type"] if isinstance(message, dict) else None
        except (ValueError, KeyError):
            kind = None
        if kind == "commit":
            await stream.commit()
        elif kind == "end":
            await stream.finish()
            return True
        elif kind == "config":
            fields = {k: v for k, v in message.items() if k != "type"}
            if unknown := set(fields) - CONFIG_KEYS:
                raise Close(
                    1008,
                    "invalid_parameter",
                    f"unknown config key {min(unknown)!r}; known: {', '.join(sorted(CONFIG_KEYS))}",
                )
            if not stream.configure(_params(fields, stream.params)):
                raise Close(1008, "config_too_late", "send config before the first audio frame")
            await self._send({"type": "ready", "model": stream.model, "sample_rate": stream.params.sample_rate})
        else:
            raise Close(1003, "invalid_message", 'text frames are JSON objects with "type": config, commit or end')
        return False

    async def _watch_wind_down(self, stream: LiveStream) -> None:
        """The model is wanted back: give the speaker `session_drain_timeout` s, then end with a final."""
        await stream.wanted_back()
        await self._finish(stream, Close(1012, "model_unloading", f"model {stream.model!r} is being unloaded"))

    async def _finish(self, stream: LiveStream, ending: Close) -> None:
        if self._ending is None:
            self._ending = ending
        await stream.finish()

    async def _send(self, message: dict[str, Any]) -> None:
        await self._ws.send_json(message)

    async def _close(self, close: Close) -> None:
        if self._ws.client_state is not WebSocketState.CONNECTED:
            return
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            if close.error is not None:
                await self._send({"type": "error", "code": close.error, "message": close.message})
            await self._ws.close(close.code)


def _params(fields: dict[str, Any], current: LiveParams) -> LiveParams:
    """`current` with the client's fields (strings from a query, or JSON values), validated."""
    try:
        return msgspec.convert({**msgspec.structs.asdict(current), **fields}, LiveParams, strict=False)
    except msgspec.ValidationError as exc:
        raise Close(1008, "invalid_parameter", f"invalid live parameters: {exc}") from None


def render(event: LiveEvent, word_timestamps: bool) -> dict[str, Any]:
    """An engine event as the client's JSON."""
    match event:
        case Partial():
            return {"type": "partial", "text": event.text, "committed": event.committed, "seq": event.seq}
        case Final():
            body: dict[str, Any] = {
                "type": "final",
                "text": event.text,
                "start": event.start,
                "end": event.end,
                "seq": event.seq,
                "segments": [{"start": s.start, "end": s.end, "text": s.text} for s in event.segments],
            }
            if word_timestamps:
                body["words"] = [
                    {"word": w.word, "start": w.start, "end": w.end, "probability": w.probability}
                    for s in event.segments
                    for w in s.words or []
                ]
            return body
        case SpeechStarted():
            return {"type": "speech_started", "at": event.at}
        case SpeechStopped():
            return {"type": "speech_stopped", "at": event.at}
