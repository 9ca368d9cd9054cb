"""Hostile HTTP clients, over raw sockets: each gets a clear answer and a closed connection.

Slow headers, a silent connection, a slow or short body, malformed heads, more connections
than allowed: none may hold the server's connections (and file descriptors) open. The
timeouts are set small here so that the file runs fast; the bounds asserted are generous.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
import wave
from collections.abc import Callable

import pytest
from conftest import ASSETS, Server, server_fixture, wait_for
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

limited = server_fixture("""
[server]
http_header_timeout = 1
http_body_timeout = 1
http_keepalive_timeout = 1
[models."tiny.en"]
source = "bundled"
ttl = -1
""")

#: What "closed promptly" means here: the timeouts are 1 s; this leaves room for a loaded machine.
BOUND = 10.0

BOUNDARY = "hostile"
FORM_HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
).encode()


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(BOUND)
    return sock


def _upload_head(length: int) -> bytes:
    return (
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


class Reply:
    """Everything the server sent until it closed the connection (or BOUND passed)."""

    def __init__(self, sock: socket.socket) -> None:
        self.data = b""
        self.closed = False
        self._sock = sock
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while chunk := self._sock.recv(65536):
                self.data += chunk
            self.closed = True
        except ConnectionResetError:
            self.closed = True
        except OSError:
            pass  # the timeout: `closed` stays False

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self) -> Reply:
        self._thread.join(BOUND + 1)
        return self

    @property
    def status(self) -> int:
        return int(self.data.split(b" ", 2)[1])

    def error(self) -> dict[str, object]:
        head, _, body = self.data.partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head.lower(), self.data
        error = json.loads(body)["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        return error


def _trickle(sock: socket.socket, data: bytes, reply: Reply, interval: float = 0.1) -> int:
    """Send `data` a byte at a time until the server answers or closes (or BOUND passes);
    returns the bytes sent."""
    deadline = time.monotonic() + BOUND
    for sent, byte in enumerate(data):
        if reply.done() or reply.data or time.monotonic() > deadline:
            return sent
        try:
            sock.send(bytes([byte]))
        except OSError:
            return sent
        time.sleep(interval)  # the attack's pace, not a wait for the server
    return len(data)


def test_a_connection_that_sends_nothing_is_closed(limited: Server) -> None:
    with _connect(limited) as sock:
        reply = Reply(sock).wait()
    assert reply.closed, "the server kept a silent connection open"
    assert reply.data == b""  # nothing was asked: no stray 408 for a preconnected socket


def test_headers_sent_a_byte_at_a_time_get_408(limited: Server) -> None:
    with _connect(limited) as sock:
        reply = Reply(sock)
        head = b"GET /health HTTP/1.1\r\nHost: test\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
        sent = _trickle(sock, head, reply)
        reply.wait()
    assert sent < len(head), "the whole head went through: no header timeout"
    assert reply.closed
    assert reply.status == 408
    assert reply.error()["code"] == "request_timeout"


def test_a_body_sent_a_byte_at_a_time_gets_408(limited: Server) -> None:
    body = FORM_HEAD + b"\0" * 2000
    with _connect(limited) as sock:
        sock.sendall(_upload_head(len(body)))
        reply = Reply(sock)
        sent = _trickle(sock, body, reply, interval=0.05)
        reply.wait()
    assert sent < len(body), "the whole body went through: no body timeout"
    assert reply.closed
    assert reply.status == 408
    error = reply.error()
    assert error["code"] == "request_timeout"
    assert "http_body_timeout" in str(error["message"])


def test_a_body_shorter_than_its_content_length_gets_408(limited: Server) -> None:
    with _connect(limited) as sock:
        sock.sendall(_upload_head(100_000) + FORM_HEAD + b"\0" * 1000)
        reply = Reply(sock).wait()
    assert reply.closed
    assert reply.status == 408
    assert reply.error()["code"] == "request_timeout"


@pytest.mark.parametrize(
    "head",
    [
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: test\r\nContent-Length: -1\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["negative-content-length", "bad-request-line", "bad-chunk"],
)
def test_malformed_http_gets_a_json_400(limited: Server, head: bytes) -> None:
    with _connect(limited) as sock:
        sock.sendall(head)
        reply = Reply(sock).wait()
    assert reply.closed
    assert reply.status == 400
    error = reply.error()
    assert error["code"] == "invalid_http"
    assert str(error["message"]).startswith("Malformed HTTP request")
    assert limited.client.get("/health").status_code == 200  # and the server is none the worse


def test_an_idle_kept_alive_connection_is_closed(limited: Server) -> None:
    with _connect(limited) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        started = time.monotonic()
        reply = Reply(sock).wait()
    assert reply.status == 200
    assert reply.closed
    # uvicorn's own default is 5 s; the configured 1 s is what closed it.
    assert time.monotonic() - started < 4.5


def test_connections_over_max_connections_get_503_json(make_server: Callable[..., Server]) -> None:
    server = make_server("""
    [server]
    max_connections = 3
    [models."tiny.en"]
    source = "bundled"
    ttl = -1
    """)
    server.client.close()  # its kept-alive connection would count
    held = [_connect(server) for _ in range(3)]
    try:
        with _connect(server) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
            reply = Reply(sock).wait()
        assert reply.closed
        assert reply.status == 503
        assert b"retry-after: 1" in reply.data.lower()
        assert reply.error()["code"] == "too_many_connections"
        # A WebSocket handshake over the cap is refused the same way (uvicorn once let it by).
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(_open_websocket(server))
        assert refused.value.response.status_code == 503
        assert json.loads(refused.value.response.body or b"{}")["error"]["code"] == "too_many_connections"
    finally:
        for sock in held:
            sock.close()
    # The cap is a ceiling, not a lock-out: with the others gone, a request is served.
    wait_for(lambda: _health_status(server) == 200, BOUND, what="a request under the cap to be served")


async def _open_websocket(server: Server) -> None:
    async with connect(f"ws://127.0.0.1:{server.port}/v1/audio/transcriptions/stream", open_timeout=BOUND):
        pass


def _health_status(server: Server) -> int:
    with _connect(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        return Reply(sock).wait().status


def test_a_websocket_outlives_the_header_timeout(limited: Server) -> None:
    """The head timer is HTTP's: once upgraded, a live session lasts as long as it talks."""
    with wave.open(str(ASSETS / "fox.wav"), "rb") as clip:
        pcm = clip.readframes(clip.getnframes())  # 16 kHz mono: about 3 s, three header timeouts
    frame = 3200  # 100 ms

    async def talk() -> tuple[list[dict[str, object]], int | None]:
        messages = []
        url = limited.url.replace("http://", "ws://") + "/v1/audio/transcriptions/stream"
        async with connect(url) as ws:
            for i in range(0, len(pcm), frame):
                await ws.send(pcm[i : i + frame])
                await asyncio.sleep(0.1)  # a microphone's pace, not event ordering
            await ws.send(json.dumps({"type": "end"}))
            with contextlib.suppress(ConnectionClosed):
                async for message in ws:
                    messages.append(json.loads(message))
            return messages, ws.close_code

    messages, close_code = asyncio.run(asyncio.wait_for(talk(), 60))
    assert close_code == 1000, messages
    finals = " ".join(str(m["text"]) for m in messages if m["type"] == "final")
    assert "fox" in finals.lower()


def test_uploads_still_work_under_the_limits(limited: Server) -> None:
    """A real upload, sent in one go, is not mistaken for a slow one."""
    clip = (ASSETS / "weather.wav").read_bytes()
    body = FORM_HEAD + clip + f"\r\n--{BOUNDARY}--\r\n".encode()
    with _connect(limited) as sock:
        sock.sendall(_upload_head(len(body)) + body)
        reply = Reply(sock).wait()
    assert reply.status == 200, reply.data[:300]
