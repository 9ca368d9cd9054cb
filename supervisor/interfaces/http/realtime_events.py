"""The OpenAI Realtime transcription vocabulary, validated at the edge.

Client events are parsed into the models below (pydantic: a bad event is answered with an
`error` event naming the bad field, and the session goes on). Two shapes of session
configuration are accepted and read into one `SessionConfig`: the GA `session.update`
(`session.type = "transcription"`, `audio.input.*`) and the beta
`transcription_session.update` (`input_audio_format`, `input_audio_transcription`, ...)
that existing clients still send. Fields OpenAI defines that change nothing here
(`noise_reduction`, `prefix_padding_ms`, ...) are accepted and ignored, so a client written
for OpenAI is not refused for them; unknown fields are ignored too, as OpenAI's SDKs add some.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: `include` value that asks for log probabilities.
LOGPROBS = "item.input_audio_transcription.logprobs"

Encoding = Literal["pcm", "pcmu", "pcma"]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TurnDetection(_Lenient):
    """`server_vad` (and `semantic_vad`, served by the same VAD: there is no semantic model here)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: Annotated[float, Field(ge=0.05, le=0.99)] | None = None
    prefix_padding_ms: Annotated[int, Field(ge=0, le=5000)] | None = None  # fixed at 300 ms here
    silence_duration_ms: Annotated[int, Field(ge=100, le=5000)] | None = None


class Transcription(_Lenient):
    model: str | None = None
    language: Annotated[str, Field(max_length=16)] | None = None
    prompt: Annotated[str, Field(max_length=4000)] | None = None


class AudioFormat(_Lenient):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: Literal[24000, 16000] | None = None  # pcm only: 24000 as OpenAI requires, 16000 as an extension


class AudioInput(_Lenient):
    format: AudioFormat | None = None
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None


class Audio(_Lenient):
    input: AudioInput | None = None


class GASession(_Lenient):
    type: Literal["transcription"]
    audio: Audio | None = None
    include: list[str] | None = None


class BetaSession(_Lenient):
    input_audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] | None = None
    input_audio_transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    include: list[str] | None = None


#: OpenAI's defaults for a transcription session.
DEFAULT_VAD = TurnDetection(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=500)


@dataclass(frozen=True)
class SessionConfig:
    """What a session is set to, in OpenAI's terms (the endpoint turns it into LiveParams)."""

    model: str = "gpt-4o-transcribe"
    language: str | None = None
    prompt: str | None = None
    encoding: Encoding = "pcm"
    rate: int = 24000  # of the PCM the client sends (8000 for pcmu/pcma)
    vad: TurnDetection | None = DEFAULT_VAD
    logprobs: bool = False

    def updated_ga(self, session: GASession) -> SessionConfig:
        """This config with a GA `session.update`'s fields; fields it leaves out stay as they were."""
        config = self
        audio_in = session.audio.input if session.audio is not None else None
        if audio_in is not None:
            if audio_in.format is not None:
                config = config._with_format(audio_in.format)
            if audio_in.transcription is not None:
                config = config._with_transcription(audio_in.transcription)
            if "turn_detection" in audio_in.model_fields_set:
                config = config._with_vad(audio_in.turn_detection)
        if session.include is not None:
            config = replace(config, logprobs=LOGPROBS in session.include)
        return config

    def updated_beta(self, session: BetaSession) -> SessionConfig:
        config = self
        if session.input_audio_format is not None:
            encoding = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}
            config = config._with_format(AudioFormat(type=encoding[session.input_audio_format], rate=24000))
        if session.input_audio_transcription is not None:
            config = config._with_transcription(session.input_audio_transcription)
        if "turn_detection" in session.model_fields_set:
            config = config._with_vad(session.turn_detection)
        if session.include is not None:
            config = replace(config, logprobs=LOGPROBS in session.include)
        return config

    def _with_format(self, fmt: AudioFormat) -> SessionConfig:
        if fmt.type == "audio/pcm":
            return replace(self, encoding="pcm", rate=fmt.rate or 24000)
        return replace(self, encoding="pcmu" if fmt.type == "audio/pcmu" else "pcma", rate=8000)

    def _with_transcription(self, t: Transcription) -> SessionConfig:
        fields = t.model_fields_set
        return replace(
            self,
            model=t.model if "model" in fields and t.model else self.model,
            language=t.language or None if "language" in fields else self.language,
            prompt=t.prompt or None if "prompt" in fields else self.prompt,
        )

    def _with_vad(self, vad: TurnDetection | None) -> SessionConfig:
        if vad is None:
            return replace(self, vad=None)
        old = self.vad or DEFAULT_VAD
        return replace(
            self,
            vad=TurnDetection(
                type=vad.type,
                threshold=vad.threshold if vad.threshold is not None else old.threshold,
                prefix_padding_ms=vad.prefix_padding_ms if vad.prefix_padding_ms is not None else old.prefix_padding_ms,
                silence_duration_ms=(
                    vad.silence_duration_ms if vad.silence_duration_ms is not None else old.silence_duration_ms
                ),
            ),
        )

    # -- as the server shows it ------------------------------------------------------------

    def _format(self) -> dict[str, Any]:
        if self.encoding == "pcm":
            return {"type": "audio/pcm", "rate": self.rate}
        return {"type": f"audio/{self.encoding}"}

    def _turn_detection(self) -> dict[str, Any] | None:
        return None if self.vad is None else self.vad.model_dump()

    def _transcription(self) -> dict[str, Any]:
        return {"model": self.model, "language": self.language, "prompt": self.prompt or ""}

    def ga(self, session_id: str) -> dict[str, Any]:
        """The session object of `session.created` / `session.updated`."""
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": session_id,
            "audio": {
                "input": {
                    "format": self._format(),
                    "transcription": self._transcription(),
                    "turn_detection": self._turn_detection(),
                    "noise_reduction": None,
                }
            },
            "include": [LOGPROBS] if self.logprobs else [],
        }

    def beta(self, session_id: str) -> dict[str, Any]:
        """The session object of `transcription_session.updated`."""
        encoding = {"pcm": "pcm16", "pcmu": "g711_ulaw", "pcma": "g711_alaw"}[self.encoding]
        return {
            "id": session_id,
            "object": "realtime.transcription_session",
            "input_audio_format": encoding,
            "input_audio_transcription": self._transcription(),
            "turn_detection": self._turn_detection(),
            "input_audio_noise_reduction": None,
            "include": [LOGPROBS] if self.logprobs else [],
        }


class SessionUpdate(_Lenient):
    type: Literal["session.update"]
    event_id: str | None = None
    session: GASession


class BetaSessionUpdate(_Lenient):
    type: Literal["transcription_session.update"]
    event_id: str | None = None
    session: BetaSession


class Append(_Lenient):
    type: Literal["input_audio_buffer.append"]
    event_id: str | None = None
    audio: str


class Commit(_Lenient):
    type: Literal["input_audio_buffer.commit"]
    event_id: str | None = None


class Clear(_Lenient):
    type: Literal["input_audio_buffer.clear"]
    event_id: str | None = None


ClientEvent = Annotated[
    SessionUpdate | BetaSessionUpdate | Append | Commit | Clear,
    Field(discriminator="type"),
]
CLIENT_EVENT_TYPES = ("session.update", "transcription_session.update") + tuple(
    f"input_audio_buffer.{verb}" for verb in ("append", "commit", "clear")
)
