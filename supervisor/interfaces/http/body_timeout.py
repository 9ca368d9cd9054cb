"""408 for a request body that stalls or trickles, instead of holding its connection forever.

Two rules, both counted only while the app is waiting for the body (a busy app is not the
client's fault):

- no single wait for the next piece may last longer than `server.http_body_timeout`
  (a `Content-Length` larger than what is sent; a client that stops mid-upload);
- over the whole body, the waiting may not exceed `http_body_timeout` plus one second per
  `MIN_BODY_RATE` bytes received (a body sent a byte a second). Apache's mod_reqtimeout
  uses the same shape (a grace period, extended by the bytes received).

An ASGI middleware, like `UploadLimit`: the body is read by the multipart parser, deep in
the app, and this is where every read passes.
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from supervisor.interfaces.http.errors import APIError

#: Bytes a second a body must average once its grace period is spent: far below any real
#: link (a phone on 2G uploads some 5 kB/s), far above a deliberate trickle.
MIN_BODY_RATE = 1000


class BodyTimedOut(Exception):
    pass


class BodyTimeout:
    def __init__(self, app: ASGIApp, timeout: float, min_rate: float = MIN_BODY_RATE) -> None:
        self.app = app
        self.timeout = timeout
        self.min_rate = min_rate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        body_done = False
        timed_out = False
        started = False
        waited = 0.0
        received = 0

        async def timed_receive() -> Message:
            nonlocal body_done, timed_out, waited, received
            if body_done:
                return await receive()  # the body is in: what is left to wait for is the disconnect
            if timed_out:
                raise BodyTimedOut
            allowed = min(self.timeout, self.timeout + received / self.min_rate - waited)
            began = time.monotonic()
            try:
                async with asyncio.timeout(max(0.0, allowed)):
                    message = await receive()
            except TimeoutError:
                timed_out = True
                raise BodyTimedOut from None  # stops the body parser; its error reply is dropped below
            finally:
                waited += time.monotonic() - began
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
            else:
                body_done = True  # http.disconnect: nothing more will come
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except BodyTimedOut:
            pass
        if timed_out and not started:
            error = APIError(
                408,
                f"The request body stopped arriving, or came too slowly (server.http_body_timeout is "
                f"{self.timeout:g} seconds; after that a body must average {self.min_rate / 1000:g} kB/s).",
                code="request_timeout",
                headers={"Connection": "close"},
            )
            await error.response()(scope, receive, send)
