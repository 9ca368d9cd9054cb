"""`WS /v1/audio/transcriptions/stream`: live transcription over a WebSocket.

The client sends 16-bit little-endian mono PCM as binary frames (and optionally JSON text
frames: `config` before the first audio, `commit`, `end`); the server sends `ready`, then
`partial`s while people speak and a `final` per utterance, and `error` before any close
that is not a normal end. This module only speaks that wire: the connection's loop (idle
timeout, length limit, wind-down, ending) is `supervisor.interfaces.live_connection`'s, the
session itself is the service's `LiveStream`, and the words come from the worker's live engine.

Close codes: 1000 normal end (after `end`, or the idle timeout, with its final first);
1003 bad data (odd-length PCM, a text frame that is not a known message); 1008 refused
(bad key, unknown model, bad parameter, a session past `max_session_seconds`, audio sent
so much faster than real time that the session is 30 s ahead of the model); 1009 a
frame over the size cap; 1011 the model failed; 1012 the model is being unloaded or the
server is stopping (after `session_drain_timeout` seconds and a final for what was heard);
1013 try again later (the model cannot load now, or too many live sessions).
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import msgspec
from fastapi import APIRouter, WebSocket

from common.protocol.live import Final, LiveEvent, LiveParams, Partial, SpeechStarted, SpeechStopped
from supervisor.interfaces.http.auth import bearer_token, key_matches
from supervisor.interfaces.http.model_path import pinned_model
from supervisor.interfaces.live_connection import Close, LiveConnection

router = APIRouter()

#: The largest binary frame accepted: about 2.7 s of 48 kHz audio. Clients send 20-200 ms frames.
MAX_FRAME_BYTES = 256 * 1024
#: `config` keys a client may set (the rest of LiveParams is the server's business).
CONFIG_KEYS = frozenset({"language", "prompt", "sample_rate", "end_silence_ms", "word_timestamps"})


@router.websocket("/v1/audio/transcriptions/stream")
async def live_transcription(websocket: WebSocket) -> None:
    await websocket.accept()
    await LiveWebSocket(websocket, websocket.app.state.service, websocket.app.state.settings).run()


class LiveWebSocket(LiveConnection):
    """One client's connection: its frames parsed, its stream's events rendered as this wire's JSON."""

    async def start(self) -> None:
        params, named = self._check_request()
        model = self._service.choose(pinned_model(self._ws.scope), named)
        stream = await self.open_stream(model, params, "stream")
        await self._send({"type": "ready", "model": stream.model, "sample_rate": params.sample_rate})

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

    async def handle(self, message: MutableMapping[str, Any]) -> bool:
        if message.get("bytes") is not None:
            return await self._audio(message["bytes"])
        if message.get("text") is not None:
            return await self._command(message["text"])
        return False

    async def _audio(self, pcm: bytes) -> bool:
        """Pass one PCM frame on; True once the session is over its length limit (and finishing)."""
        if len(pcm) > MAX_FRAME_BYTES:
            raise Close(1009, "frame_too_large", f"audio frames may be at most {MAX_FRAME_BYTES} bytes")
        if len(pcm) % 2:
            raise Close(1003, "bad_audio", "audio frames are 16-bit samples: an even number of bytes")
        # Never waits: a client this connection stopped reading would find its keepalive pings
        # stuck behind its own audio and give up. A client too far ahead is refused instead.
        return await self.queue_audio(pcm)

    async def _command(self, text: str) -> bool:
        """One JSON text frame; True once the client said `end`."""
        stream = self.stream
        assert stream is not None
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

    async def render(self, event: LiveEvent) -> None:
        assert self.stream is not None
        await self._send(render(event, self.stream.params.word_timestamps))

    async def send_error(self, code: str, message: str) -> None:
        await self._send({"type": "error", "code": code, "message": message})

    async def _send(self, message: dict[str, Any]) -> None:
        await self._ws.send_json(message)


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
