"""Whose fault a failure is, decided once for every interface.

Models and workers raise their own exceptions (`ModelUnavailable`, `WorkerCrashed`,
`WorkerRequestError`, `UnknownModel`); `classify` turns each into a `ServiceError` with a
`FailureKind` and a machine-readable code, and each interface maps kinds to its own wire
(an HTTP status, a Wyoming `error` code, a WebSocket close code) in one small table.
"""

from __future__ import annotations

from enum import StrEnum

from common.protocol import ErrorCode
from supervisor.models.owner import ModelUnavailable
from supervisor.models.registry import UnknownModel
from supervisor.workers.process import WorkerCrashed, WorkerError, WorkerRequestError


class FailureKind(StrEnum):
    """Whose fault, and what the client should do about it; each interface maps these once."""

    BAD_AUDIO = "bad_audio"  # the client's audio: do not retry it
    BAD_PARAMETER = "bad_parameter"  # the client's parameters
    TOO_LARGE = "too_large"  # more audio than the server takes (bytes or seconds): send less
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
        if exc.code is ErrorCode.AUDIO_TOO_LONG:
            return ServiceError(FailureKind.TOO_LARGE, str(exc), "audio_too_long", param="file")
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
