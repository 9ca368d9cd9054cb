"""Errors in OpenAI's shape, so SDKs raise the exception class their users expect.

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

400 → BadRequestError, 401 → AuthenticationError, 404 → NotFoundError,
413/422 → APIStatusError, 503 → InternalServerError (SDKs retry it).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from supervisor.models.owner import ModelUnavailable
from supervisor.models.registry import UnknownModel
from supervisor.workers.process import WorkerCrashed, WorkerRequestError
from worker.protocol import ErrorCode

log = logging.getLogger("asr.http")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


def from_worker_error(exc: Exception) -> APIError:
    """Map what a worker or model slot raised to the HTTP error a client should see."""
    if isinstance(exc, WorkerRequestError):
        if exc.code is ErrorCode.BAD_AUDIO:
            return bad_request(str(exc), param="file", code="invalid_audio")
        if exc.code is ErrorCode.BAD_PARAMETER:
            return bad_request(str(exc), code="invalid_parameter")
        return APIError(500, str(exc), type="server_error", code="transcription_failed")
    if isinstance(exc, WorkerCrashed):
        return APIError(503, f"{exc}; the request was not completed, please retry",
                        type="server_error", code="worker_crashed")
    if isinstance(exc, ModelUnavailable):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
        return APIError(503, str(exc), type="server_error", code=exc.code, headers=headers)
    if isinstance(exc, UnknownModel):
        return APIError(404, str(exc), param="model", code="model_not_found")
    raise TypeError(f"not a worker error: {exc!r}")


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        param = str(err["loc"][-1]) if err.get("loc") else None
        if err.get("type") == "missing" and param == "file":
            return bad_request("No file was uploaded: send the audio as the multipart form field 'file'.",
                               param="file").response()
        return bad_request(f"Invalid value for '{param}': {err['msg']}", param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return APIError(exc.status_code, str(exc.detail), type=kind).response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return APIError(500, "internal server error", type="server_error").response()
