"""`WS /v1/realtime?intent=transcription`: OpenAI Realtime transcription sessions.

An app written for OpenAI's Realtime transcription API works here by changing its base
URL. This module only speaks that wire: the connection's loop (idle timeout, length limit,
wind-down, ending) is `supervisor.interfaces.live_connection`'s, the session is the
service's `LiveStream` (the same lease, TTL, capacity and drain rules as
`/v1/audio/transcriptions/stream`), and the words come from the worker's live engine.

Items are the engine's utterances: utterance n of a session is item `item_<token><n>`.
Deltas are true deltas: while the speaker talks, each `…delta` carries the words the
engine has newly *committed* (two passes agreed, and the model is sure of them), which are
never retracted. When the utterance ends, its final (decoded whole, with the full beam)
begins with those words, since the engine makes the decoder write them first: the rest goes
out as a last delta, so the deltas of an item joined are its `…completed` transcript, as
OpenAI's contract says. Unlike OpenAI, deltas may start while the speaker is still talking,
so they come before the item's `input_audio_buffer.committed` (sent when the VAD ends the
utterance, or with its final after a manual commit).

Bad client events are answered with an `error` event and the session goes on. The
connection closes (after an `error` event, when it is not a normal end) for: a bad key or
intent (1008), a session past `max_session_seconds` or audio far faster than real time
(1008), a model that cannot serve now (1013) or failed (1011, after `…failed` for the items
in flight), the model being unloaded or the server stopping (1012, after
`session_drain_timeout` seconds and the finals of what was heard), or no event for
`session_idle_timeout` seconds (1000, after the finals).
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import math
import secrets
from collections.abc import MutableMapping
from typing import Any

import msgspec
import pydantic
from fastapi import APIRouter, WebSocket

from common.protocol.live import Final, LiveEvent, LiveParams, Partial, SpeechStarted, SpeechStopped
from supervisor.config import Settings
from supervisor.failures import ServiceError
from supervisor.interfaces.http import g711
from supervisor.interfaces.http.auth import bearer_token, key_matches
from supervisor.interfaces.http.model_path import pinned_model
from supervisor.interfaces.http.realtime_events import (
    CLIENT_EVENT_TYPES,
    Append,
    BetaSessionUpdate,
    Clear,
    ClientEvent,
    Commit,
    SessionConfig,
    SessionUpdate,
)
from supervisor.interfaces.live_connection import Close, LiveConnection
from supervisor.live_stream import beyond
from supervisor.service import TranscriptionService

log = logging.getLogger("asr.realtime")

router = APIRouter()

#: The largest client event: OpenAI's own limit is 15 MiB; a base64 append of this size
#: carries about 60 s of 24 kHz audio, which is more than the 30 s a session may be ahead.
MAX_EVENT_BYTES = 4 * 1024 * 1024
#: OpenAI refuses to commit less audio than this.
MIN_COMMIT_MS = 100
#: OpenAI's transcription model names: they mean the default model unless configured as aliases.
OPENAI_MODELS = frozenset(
    {"gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-transcribe-latest", "gpt-4o-mini-transcribe-latest"}
)
SUBPROTOCOL_KEY = "openai-insecure-api-key."

_EVENTS: pydantic.TypeAdapter[SessionUpdate | BetaSessionUpdate | Append | Commit | Clear] = pydantic.TypeAdapter(
    ClientEvent
)


class BadEvent(Exception):
    """A client event that is refused with an `error` event; the session goes on."""

    def __init__(self, code: str, message: str, param: str | None = None, event_id: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param, self.event_id = code, message, param, event_id


@router.websocket("/v1/realtime")
async def realtime_transcription(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
    await RealtimeConnection(websocket, websocket.app.state.service, websocket.app.state.settings).run()


class RealtimeConnection(LiveConnection):
    """One client's Realtime session: its events in, the engine's events out as OpenAI's."""

    SESSION = "realtime"
    ACTIVITY = "event"

    def __init__(self, websocket: WebSocket, service: TranscriptionService, settings: Settings) -> None:
        super().__init__(websocket, service, settings)
        self._config = SessionConfig()
        self._session_id = "sess_" + secrets.token_hex(10)
        self._token = secrets.token_hex(6)
        self._event_ids = itertools.count()
        self._uncommitted = 0.0  # seconds of audio since the last commit or clear
        self._said: dict[int, str] = {}  # per utterance: the text its deltas carried so far
        self._committed: set[int] = set()  # utterances whose `committed` was sent
        self._last_item: str | None = None

    async def start(self) -> None:
        self._check_request()
        await self._send({"type": "session.created", "session": self._config.ga(self._session_id)})

    def _check_request(self) -> None:
        token = bearer_token(self._ws.headers.get("authorization", ""))
        for protocol in self._ws.scope.get("subprotocols", []):
            if protocol.startswith(SUBPROTOCOL_KEY):
                token = token or protocol.removeprefix(SUBPROTOCOL_KEY)
        if not key_matches(token, self._settings.api_keys):
            raise Close(
                1008,
                "invalid_api_key",
                "Incorrect API key provided: send 'Authorization: Bearer <key>' or, from a browser, "
                f"the subprotocol '{SUBPROTOCOL_KEY}<key>'.",
            )
        if self._ws.query_params.get("intent") != "transcription":
            raise Close(
                1008,
                "unsupported_intent",
                "this server runs transcription sessions only: connect to /v1/realtime?intent=transcription",
            )

    # -- the client's events -----------------------------------------------------------------

    async def handle(self, message: MutableMapping[str, Any]) -> bool:
        """One client event; a bad one is answered with an `error` event and the session goes on."""
        try:
            event = self._parse(message.get("text"))
            try:
                return await self._dispatch(event)
            except BadEvent as bad:
                bad.event_id = event.event_id
                raise
        except BadEvent as bad:
            await self.send_error(bad.code, bad.message, bad.param, bad.event_id)
        return False

    def _parse(self, text: str | None) -> SessionUpdate | BetaSessionUpdate | Append | Commit | Clear:
        if text is None:
            raise BadEvent("invalid_event", "client events are JSON text messages, not binary ones")
        if len(text) > MAX_EVENT_BYTES:
            raise BadEvent("event_too_large", f"a client event may be at most {MAX_EVENT_BYTES} bytes")
        try:
            body = json.loads(text)
        except ValueError:
            raise BadEvent("invalid_json", "the event is not valid JSON") from None
        kind = body.get("type") if isinstance(body, dict) else None
        event_id = body.get("event_id") if isinstance(body, dict) else None
        event_id = event_id if isinstance(event_id, str) else None
        if kind not in CLIENT_EVENT_TYPES:
            raise BadEvent(
                "invalid_event_type",
                f"unsupported event type {kind!r}; this server takes: {', '.join(CLIENT_EVENT_TYPES)}",
                "type",
                event_id,
            )
        try:
            return _EVENTS.validate_python(body)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(part) for part in first["loc"][1:])
            raise BadEvent(
                "invalid_value", f"invalid {param or 'event'}: {first['msg']}", param or None, event_id
            ) from None

    async def _dispatch(self, event: SessionUpdate | BetaSessionUpdate | Append | Commit | Clear) -> bool:
        """One valid event; True once the session is over its length limit (and finishing)."""
        match event:
            case SessionUpdate():
                self._configure(self._config.updated_ga(event.session))
                await self._send({"type": "session.updated", "session": self._config.ga(self._session_id)})
            case BetaSessionUpdate():
                self._configure(self._config.updated_beta(event.session))
                await self._send(
                    {"type": "transcription_session.updated", "session": self._config.beta(self._session_id)}
                )
            case Append():
                return await self._append(event.audio)
            case Commit():
                if self._uncommitted * 1000 < MIN_COMMIT_MS:
                    raise BadEvent(
                        "input_audio_buffer_commit_empty",
                        f"buffer too small: expected at least {MIN_COMMIT_MS} ms of audio, "
                        f"but it holds {self._uncommitted * 1000:.0f} ms",
                    )
                assert self.stream is not None  # there was audio
                self._uncommitted = 0.0
                await self.stream.commit()
            case Clear():
                self._uncommitted = 0.0
                if self.stream is not None:
                    await self.stream.clear()
                await self._send({"type": "input_audio_buffer.cleared"})
        return False

    def _configure(self, config: SessionConfig) -> None:
        """Take `config` if it is valid and, once audio has started, changes only what may change then."""
        params, model = self._params(config), self._model(config.model)
        if self.stream is not None and (
            params != self.stream.params or self._service.resolve(model) != self.stream.model
        ):
            raise BadEvent(
                "session_update_too_late",
                "the session's audio has started: its model, format, language, prompt and turn detection "
                "are fixed from the first input_audio_buffer.append on",
                "session",
            )
        self._config = config

    def _params(self, config: SessionConfig) -> LiveParams:
        fields: dict[str, Any] = {
            "language": config.language,
            "prompt": config.prompt,
            "sample_rate": config.rate,
            "turns": "vad" if config.vad is not None else "manual",
            "empty_finals": True,
            "word_timestamps": config.logprobs,
        }
        if config.vad is not None:
            if config.vad.silence_duration_ms is not None:
                fields["end_silence_ms"] = config.vad.silence_duration_ms
            if config.vad.threshold is not None:
                fields["vad_threshold"] = config.vad.threshold
        try:
            return msgspec.convert(fields, LiveParams)
        except msgspec.ValidationError as exc:
            raise BadEvent("invalid_value", f"invalid session: {exc}", "session") from None

    def _model(self, name: str) -> str | None:
        """The configured model `name` means (None: the default, or the base URL's model)."""
        param = "session.audio.input.transcription.model"
        if not self._service.knows(name) and name not in OPENAI_MODELS:
            raise BadEvent(
                "invalid_value",
                f"model {name!r} is not served here; models: {', '.join(self._service.registry.names())}",
                param,
            )
        try:
            return self._service.choose(pinned_model(self._ws.scope), name if self._service.knows(name) else None)
        except ServiceError as exc:
            raise BadEvent(exc.code, exc.message, param) from None

    async def _append(self, audio: str) -> bool:
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise BadEvent("invalid_value", "audio is not valid base64", "audio") from None
        if self._config.encoding != "pcm":
            data = g711.to_pcm16(data, self._config.encoding)
        elif len(data) % 2:
            raise BadEvent("invalid_value", "audio/pcm is 16-bit samples: an even number of bytes", "audio")
        if not data:
            return False
        if self.stream is None:  # leased at the first audio: the model is the session's from then on
            params, model = self._params(self._config), self._model(self._config.model)
            await self.open_stream(model, params, "realtime")
        if await self.queue_audio(data):  # never waits; refuses a client far ahead
            return True
        self._uncommitted += len(data) / (2 * self._config.rate)
        return False

    # -- the engine's events ------------------------------------------------------------------

    async def failed(self, failure: ServiceError) -> None:
        """Every item in flight fails with the session."""
        for utterance in sorted(self._said):
            await self._send(
                {
                    "type": "conversation.item.input_audio_transcription.failed",
                    "item_id": self._item(utterance),
                    "content_index": 0,
                    "error": {"type": "server_error", "code": failure.code, "message": failure.message, "param": None},
                }
            )

    async def render(self, event: LiveEvent) -> None:
        vad = self._config.vad is not None
        match event:
            case SpeechStarted() if vad:
                await self._send(
                    {
                        "type": "input_audio_buffer.speech_started",
                        "audio_start_ms": round(event.at * 1000),
                        "item_id": self._item(event.utterance),
                    }
                )
            case SpeechStopped() if vad:
                await self._send(
                    {
                        "type": "input_audio_buffer.speech_stopped",
                        "audio_end_ms": round(event.at * 1000),
                        "item_id": self._item(event.utterance),
                    }
                )
                await self._commit_item(event.utterance)
            case Partial():
                if new := beyond(self._said.setdefault(event.utterance, ""), event.committed):
                    await self._delta(event.utterance, new)
                    self._said[event.utterance] = event.committed
            case Final():
                await self._completed(event)

    async def _completed(self, final: Final) -> None:
        await self._commit_item(final.utterance)
        said = self._said.pop(final.utterance, "")
        rest = beyond(said, final.text)
        if rest:
            await self._delta(final.utterance, rest)
        elif rest is None:  # the engine makes every final begin with its committed words: a bug if seen
            log.warning(
                "item %s: the final %r does not extend the deltas %r", self._item(final.utterance), final.text, said
            )
        body: dict[str, Any] = {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": self._item(final.utterance),
            "content_index": 0,
            "transcript": final.text,
            "usage": {"type": "duration", "seconds": round(max(0.0, final.end - final.start), 3)},
        }
        if self._config.logprobs:
            body["logprobs"] = [
                {
                    "token": word.word,
                    "logprob": math.log(max(word.probability, 1e-12)),
                    "bytes": list(word.word.encode()),
                }
                for segment in final.segments
                for word in segment.words or []
            ]
        await self._send(body)

    async def _delta(self, utterance: int, text: str) -> None:
        await self._send(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": self._item(utterance),
                "content_index": 0,
                "delta": text,
            }
        )

    async def _commit_item(self, utterance: int) -> None:
        if utterance in self._committed:
            return
        self._committed.add(utterance)
        item = self._item(utterance)
        await self._send({"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": self._last_item})
        self._last_item = item

    def _item(self, utterance: int) -> str:
        return f"item_{self._token}{utterance:04d}"

    # -- this wire's messages -------------------------------------------------------------------

    async def _send(self, body: dict[str, Any]) -> None:
        await self._ws.send_json({"event_id": f"event_{self._token}{next(self._event_ids)}", **body})

    async def send_error(self, code: str, message: str, param: str | None = None, event_id: str | None = None) -> None:
        kind = "invalid_request_error" if code not in ("internal_error", "model_crashed") else "server_error"
        await self._send(
            {
                "type": "error",
                "error": {"type": kind, "code": code, "message": message, "param": param, "event_id": event_id},
            }
        )
