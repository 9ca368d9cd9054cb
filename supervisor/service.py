"""The one path from an interface to a model: pick it, lease its worker, stream, classify failures.

HTTP, Wyoming and the coming live WebSocket/Realtime handlers call this and only translate
what it yields or raises into their own wire format. So the loop "resolve the model name,
lease a worker, stream its output, release the lease, say what went wrong" exists once,
and so does the judgement of whose fault a failure is (`ServiceError.kind`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from enum import StrEnum

from supervisor.models.owner import ModelOwner, ModelUnavailable
from supervisor.models.registry import ModelRegistry, UnknownModel
from supervisor.workers.process import WorkerCrashed, WorkerError, WorkerRequestError
from worker.backends import describe
from worker.protocol import ErrorCode, Segment, TranscribeParams, TranscribeResult


class FailureKind(StrEnum):
    """Whose fault, and what the client should do about it; each interface maps these once."""

    BAD_AUDIO = "bad_audio"  # the client's audio: do not retry it
    BAD_PARAMETER = "bad_parameter"  # the client's parameters
    UNKNOWN_MODEL = "unknown_model"
    UNAVAILABLE = "unavailable"  # load failed, backing off, server full, shutting down: retry later
    CRASHED = "crashed"  # the worker died under the request: retry
    INTERNAL = "internal"  # the model failed on this input


class ServiceError(Exception):
    def __init__(
        self, kind: FailureKind, message: str, code: str, param: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.code = code  # machine-readable, shown to clients (OpenAI's `code`)
        self.param = param
        self.retry_after = retry_after


def classify(exc: Exception) -> ServiceError:
    """The one mapping from what models and workers raise to what clients are told."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, WorkerRequestError):
        if exc.code is ErrorCode.BAD_AUDIO:
            return ServiceError(FailureKind.BAD_AUDIO, str(exc), "invalid_audio", param="file")
        if exc.code is ErrorCode.BAD_PARAMETER:
            return ServiceError(FailureKind.BAD_PARAMETER, str(exc), "invalid_parameter")
        return ServiceError(FailureKind.INTERNAL, str(exc), "transcription_failed")
    if isinstance(exc, WorkerCrashed):
        return ServiceError(
            FailureKind.CRASHED, f"{exc}; the request was not completed, please retry", "worker_crashed"
        )
    if isinstance(exc, ModelUnavailable):
        return ServiceError(FailureKind.UNAVAILABLE, str(exc), exc.code, retry_after=exc.retry_after)
    if isinstance(exc, UnknownModel):
        return ServiceError(FailureKind.UNKNOWN_MODEL, str(exc), "model_not_found", param="model")
    if isinstance(exc, WorkerError):
        return ServiceError(FailureKind.INTERNAL, str(exc), "transcription_failed")
    raise TypeError(f"not a model or worker failure: {exc!r}") from exc


Item = Segment | TranscribeResult


class Transcription:
    """One request's output: segments (when `params.stream`), then the result.

    The model's lease is held while this is being iterated, so a streaming client keeps
    its model busy (safe from the TTL) until its last event; `aclose()` (or leaving an
    `aclosing` block) releases it at once and tells the worker to stop decoding.
    Failures surface as `ServiceError`.
    """

    def __init__(self, owner: ModelOwner, audio: bytes, params: TranscribeParams) -> None:
        self.model = owner.spec.name
        self.pid: int | None = None  # the worker's, once leased
        self._items = self._run(owner, audio, params)

    def __aiter__(self) -> Transcription:
        return self

    async def __anext__(self) -> Item:
        try:
            return await anext(self._items)
        except (WorkerError, ModelUnavailable) as exc:
            raise classify(exc) from None

    async def result(self) -> TranscribeResult:
        """Consume the rest and return the final result."""
        async for item in self:
            if isinstance(item, TranscribeResult):
                return item
        raise ServiceError(FailureKind.INTERNAL, "the worker sent no result", "transcription_failed")

    async def aclose(self) -> None:
        await self._items.aclose()

    async def _run(self, owner: ModelOwner, audio: bytes, params: TranscribeParams) -> AsyncGenerator[Item, None]:
        async with owner.lease() as worker, contextlib.aclosing(worker.stream(audio, params)) as items:
            self.pid = worker.pid
            async for item in items:
                yield item


@dataclass(frozen=True, slots=True)
class Transcribed:
    result: TranscribeResult
    model: str
    pid: int | None


class TranscriptionService:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def resolve(self, model: str | None) -> str:
        """The configured model a client's name means; ServiceError(unknown_model) if none."""
        try:
            return self.registry.resolve(model)
        except UnknownModel as exc:
            raise classify(exc) from None

    def knows(self, model: str | None) -> bool:
        return self.registry.knows(model)

    def stream(self, model: str | None, audio: bytes, params: TranscribeParams) -> Transcription:
        """Start a transcription of `audio`; iterate it (in an `aclosing` block) for its output."""
        owner = self.registry.get(self.resolve(model))
        _check_capabilities(owner.spec.backend, params)
        return Transcription(owner, audio, params)

    async def transcribe(self, model: str | None, audio: bytes, params: TranscribeParams) -> Transcribed:
        async with contextlib.aclosing(self.stream(model, audio, params)) as transcription:
            result = await transcription.result()
            return Transcribed(result, transcription.model, transcription.pid)


def _check_capabilities(backend: str, params: TranscribeParams) -> None:
    """Refuse what the model's backend cannot do before a worker is started for it."""
    can = describe(backend).capabilities
    if params.task == "translate" and not can.translate:
        raise ServiceError(
            FailureKind.BAD_PARAMETER, f"models of the {backend} backend cannot translate", "invalid_parameter"
        )
    if params.word_timestamps and not can.word_timestamps:
        raise ServiceError(
            FailureKind.BAD_PARAMETER,
            f"models of the {backend} backend give no word timestamps",
            "invalid_parameter",
            param="timestamp_granularities[]",
        )
