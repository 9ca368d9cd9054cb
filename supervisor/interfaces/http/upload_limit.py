"""Refuse oversized uploads with 413 before their bodies are read into memory or disk.

An ASGI middleware rather than a check in the route: by the time a route runs,
the multipart parser has already spooled the whole body.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class UploadTooLarge(Exception):
    pass


class UploadLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, paths: tuple[str, ...] = ("/v1/audio/",)) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.paths):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)  # known too big: answer without reading a byte of it
            return

        received = 0
        too_large = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise UploadTooLarge  # stops the body parser; it turns this into an error reply...
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large:
                return  # ...which we drop, to answer 413 instead
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except UploadTooLarge:
            pass
        if too_large and not started:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        mb = self.max_bytes / 1_000_000
        body = json.dumps(
            {
                "error": {
                    "message": f"The uploaded file is larger than this server's limit of {mb:g} MB (server.max_upload_mb).",
                    "type": "invalid_request_error",
                    "param": "file",
                    "code": "file_too_large",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
