"""Errors in OpenAI's shape, so SDKs raise the exception class their users expect.

    {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}

400 → BadRequestError, 401 → AuthenticationError, 404 → NotFoundError,
413/422 → APIStatusError, 503 → InternalServerError (SDKs retry it).
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from supervisor.failures import FailureKind, ServiceError, classify

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

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)

    def raw(self) -> bytes:
        """The whole HTTP/1.1 response, closing the connection: for the protocol layer, which
        answers requests that never reach the app (a malformed head, one sent too slowly)."""
        body = json.dumps(self.body()).encode()
        reason = HTTPStatus(self.status).phrase
        head = [
            f"HTTP/1.1 {self.status} {reason}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "connection: close",
            *(f"{name}: {value}" for name, value in (self.headers or {}).items() if name.lower() != "connection"),
        ]
        return "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


#: HTTP status for each kind of failure the service layer reports.
STATUS = {
    FailureKind.BAD_AUDIO: 400,
    FailureKind.BAD_PARAMETER: 400,
    FailureKind.TOO_LARGE: 413,
    FailureKind.UNKNOWN_MODEL: 404,
    FailureKind.UNAVAILABLE: 503,
    FailureKind.CRASHED: 503,
    FailureKind.INTERNAL: 500,
}


def from_service_error(error: ServiceError) -> APIError:
    """The HTTP form of a failure the service layer classified."""
    status = STATUS[error.kind]
    headers = {"Retry-After": str(max(1, round(error.retry_after)))} if error.retry_after else None
    return APIError(
        status,
        error.message,
        type="invalid_request_error" if status < 500 else "server_error",
        param=error.param,
        code=error.code,
        headers=headers,
    )


def api_error(exc: Exception) -> APIError:
    """What a model, worker or the service raised, as the HTTP error a client should see."""
    return from_service_error(classify(exc))


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return from_service_error(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        err = exc.errors()[0]
        if err.get("type") == "json_invalid":  # its `loc` is a character position, not a field
            return bad_request(
                f"The request body is not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}"
            ).response()
        param = str(err["loc"][-1]) if err.get("loc") else None
        if err.get("type") == "missing" and param == "file":
            return bad_request(
                "No file was uploaded: send the audio as the multipart form field 'file'.", param="file"
            ).response()
        return bad_request(f"Invalid value for '{param}': {err['msg']}", param=param).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return APIError(exc.status_code, str(exc.detail), type=kind).response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return APIError(500, "internal server error", type="server_error").response()
