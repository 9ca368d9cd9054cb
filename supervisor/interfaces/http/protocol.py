"""uvicorn's h11 protocol, with the limits a server facing untrusted clients needs.

uvicorn times out idle kept-alive connections, and nothing else: a client that sends its
headers a byte a second, or opens a connection and sends nothing, holds a connection (and
a file descriptor) for as long as it likes. Its malformed-request and over-limit answers
are plain text. This subclass adds, per connection:

- a header timeout (`server.http_header_timeout`): the request line and headers must be
  complete this long after the connection opens, or after the first byte of a kept-alive
  connection's next request. A client that sent part of a head gets 408; one that sent
  nothing is just closed (a browser's preconnected socket must not read a stray 408).
- a connection cap (`server.max_connections`): a request on a connection over it gets 503
  (and `Retry-After`) and the connection closes.
- malformed HTTP (`Content-Length: -1`, a bad request line, a bad chunk) answered in
  OpenAI's JSON error shape, like every other error of this server.
- a lingering close: a connection closed while its client is still sending a body (a 413
  for an upload over `max_upload_mb`, a 503 over the cap) is half-closed, and what the
  client goes on sending is read and dropped for a few seconds. Closed at once, the
  kernel answers the unread bytes with a reset, which can destroy the answer before the
  client reads it (nginx's `lingering_close` exists for the same reason).

The body is timed in the app (`body_timeout.BodyTimeout`), where it is read: the clock must
only run while the server waits for the client, not while the app is busy.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import h11
from starlette.types import Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from supervisor.config import ServerTable
from supervisor.interfaces.http.errors import APIError

log = logging.getLogger("asr.http")

#: The longest request head (line and headers) accepted: h11's default, stated here so it stays put.
MAX_HEAD_BYTES = 16 * 1024
#: A lingering close ends when the client has sent nothing for this long, or at the limit.
LINGER_IDLE_S = 1.0
LINGER_MAX_S = 5.0


def protocol_class(server: ServerTable) -> type[H11Protocol]:
    """The protocol uvicorn should build each connection with, bound to these settings."""

    class Protocol(GuardedH11Protocol):
        header_timeout = server.http_header_timeout
        max_connections = server.max_connections

    return Protocol


class _Connection(h11.Connection):
    """h11's connection, telling the protocol what it parsed: the protocol's only way to see
    a request head arrive, or the exact parse error, without copying uvicorn's event loop."""

    def __init__(self, protocol: GuardedH11Protocol, max_incomplete_event_size: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)
        self._protocol = protocol
        self.error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error = exc
            raise
        if isinstance(event, h11.Request):
            self._protocol.head_received()
        return event


class GuardedH11Protocol(H11Protocol):
    header_timeout: float = 10.0
    max_connections: int = 512

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._parser = _Connection(self, config.h11_max_incomplete_event_size or MAX_HEAD_BYTES)
        self.conn = self._parser
        self._app = self.app
        self._head_timer: asyncio.TimerHandle | None = None

    # -- the header timeout -----------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._lingering: _LingeringClose | None = None
        super().connection_made(cast(asyncio.Transport, _Transport(transport, self)))
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._lingering is not None:
            self._lingering.heard()  # the rest of a body nobody will read: dropped
            return
        super().data_received(data)  # cancels uvicorn's keep-alive timer
        if self.transport.get_protocol() is not self:
            return  # upgraded to a WebSocket: the connection is no longer HTTP's to time out
        if self._between_requests() and not self.transport.is_closing():
            self._arm_head_timer()  # the next request has begun: its head is now on the clock

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        if self._lingering is not None:
            self._lingering.cancel()
        super().connection_lost(exc)

    def close_transport(self, transport: asyncio.Transport) -> None:
        """Every close of uvicorn's goes through here: linger while a body is still coming."""
        if self._lingering is not None or transport.is_closing():
            return
        sending_body = self.conn.their_state is h11.SEND_BODY
        if not sending_body or not transport.can_write_eof():
            transport.close()
            return
        self._disarm_head_timer()
        self._lingering = _LingeringClose(transport, self.loop)

    def head_received(self) -> None:
        """A request head is complete: stop its clock, and pick who answers it."""
        self._disarm_head_timer()
        over = len(self.connections) > self.max_connections or len(self.tasks) >= self.max_connections
        self.app = _over_capacity if over else self._app
        if over:
            log.warning("refused a request: %d HTTP connections open (server.max_connections)", len(self.connections))

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        """uvicorn builds the WebSocket's protocol with the app from its config, not ours: a
        handshake over the cap is answered here, or every WebSocket would bypass it."""
        if self.app is _over_capacity:
            self.transport.write(_too_many_connections().raw())
            self.transport.close()
            return
        super().handle_websocket_upgrade(event)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._between_requests():
            return
        unparsed, _ = self.conn.trailing_data
        if unparsed and self.conn.our_state is h11.IDLE:
            error = APIError(
                408,
                f"The request headers did not arrive within {self.header_timeout:g} s (server.http_header_timeout).",
                code="request_timeout",
            )
            self.transport.write(error.raw())
        self.transport.close()

    # -- malformed requests -----------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this on any h11 parse error; answer in JSON, then close."""
        self._disarm_head_timer()
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()  # a response is under way: nothing more can be said
            return
        error = self._parser.error
        status = error.error_status_hint if error is not None else 400
        detail = str(error) if error is not None else msg
        code = "headers_too_large" if status == 431 else "invalid_http"
        self.transport.write(APIError(status, f"Malformed HTTP request: {detail}.", code=code).raw())
        self.transport.close()


class _LingeringClose:
    """Half-closed (our answer is sent, then FIN), reading and dropping the client's bytes
    until it goes quiet for `LINGER_IDLE_S`, hangs up, or `LINGER_MAX_S` passes."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        transport.write_eof()  # after what is buffered: the answer goes out whole
        transport.resume_reading()  # uvicorn may have paused it while the app was not reading
        self._idle = loop.call_later(LINGER_IDLE_S, transport.close)
        self._limit = loop.call_later(LINGER_MAX_S, transport.close)

    def heard(self) -> None:
        self._idle.cancel()
        self._idle = self._loop.call_later(LINGER_IDLE_S, self._transport.close)

    def cancel(self) -> None:
        self._idle.cancel()
        self._limit.cancel()


class _Transport:
    """The socket's transport as uvicorn's code sees it: the same, except that `close()`
    asks the protocol (which may linger) and `is_closing()` is true from then on."""

    def __init__(self, transport: asyncio.Transport, protocol: GuardedH11Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._closed = False

    def close(self) -> None:
        self._closed = True
        self._protocol.close_transport(self._transport)

    def is_closing(self) -> bool:
        return self._closed or self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _too_many_connections() -> APIError:
    return APIError(
        503,
        "The server has as many connections open as it allows (server.max_connections); try again shortly.",
        type="server_error",
        code="too_many_connections",
        headers={"Retry-After": "1", "Connection": "close"},
    )


async def _over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    await _too_many_connections().response()(scope, receive, send)
