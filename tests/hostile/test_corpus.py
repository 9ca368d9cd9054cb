"""A corpus of hostile and careless input, interface by interface, against one server.

Each case must get a clear error in its interface's own format (an OpenAI-style 4xx for
HTTP; an `error` message and a non-1011 close for the live WebSocket), and after the whole
corpus the same worker must still be serving and the log must hold no traceback. The
counts are printed under "reliability figures" for docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import wave
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from conftest import ASSETS, Server, record_figure, server_fixture
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

corpus_server = server_fixture("""
[server]
max_upload_mb = 2
[models."tiny.en"]
source = "bundled"
ttl = -1
max_audio_seconds = 60
""")

FOX = (ASSETS / "fox.wav").read_bytes()


def _wav(rate: int, frames: int, width: int = 2, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\0" * frames * width * channels)
    return out.getvalue()


def _post(files: Any = None, data: Any = None, **kwargs: Any) -> Callable[[httpx.Client], httpx.Response]:
    return lambda http: http.post("/v1/audio/transcriptions", files=files, data=data, **kwargs)


def _file(name: str, content: bytes, **data: Any) -> Callable[[httpx.Client], httpx.Response]:
    return _post(files={"file": (name, content)}, data=data)


#: (case, request): every one is the client's mistake or malice, so every answer is a 4xx.
HTTP_CASES: list[tuple[str, Callable[[httpx.Client], httpx.Response]]] = [
    ("no file field", _post(data={"model": "tiny.en"})),
    ("empty file", _file("a.wav", b"")),
    ("text, not audio", _file("a.wav", b"shopping list\n" * 100)),
    ("random bytes", _file("a.mp3", bytes(range(256)) * 400)),
    ("WAV cut in its header", _file("a.wav", FOX[:20])),
    ("WAV header, no samples", _file("a.wav", FOX[:44])),
    ("1 Hz WAV holding 3 hours", _file("bomb.wav", _wav(1, 10800))),
    ("8 kHz WAV over max_audio_seconds", _file("long.wav", _wav(8000, 8000 * 90))),
    ("upload over max_upload_mb", _file("big.wav", b"\0" * 3_000_000)),
    ("unknown model", _file("a.wav", FOX, model="no-such-model")),
    ("model name of control characters", _file("a.wav", FOX, model="\x00\x1b[2J")),
    ("response_format yaml", _file("a.wav", FOX, response_format="yaml")),
    ("temperature 'hot'", _file("a.wav", FOX, temperature="hot")),
    ("temperature 1e309", _file("a.wav", FOX, temperature="1e309")),
    ("language xx", _file("a.wav", FOX, language="xx")),
    ("timestamp granularity bogus", _file("a.wav", FOX, **{"timestamp_granularities[]": "bogus"})),
    ("stream 'perhaps'", _file("a.wav", FOX, stream="perhaps")),
    ("JSON body instead of a form", lambda http: http.post("/v1/audio/transcriptions", json={"file": "x"})),
    ("file sent as a text field", _post(data={"file": "not a file"})),
    (
        "malformed multipart",
        lambda http: http.post(
            "/v1/audio/transcriptions",
            content=b"--x\r\nnonsense",
            headers={"Content-Type": "multipart/form-data; boundary=x"},
        ),
    ),
    (
        "translation with an English-only model",
        lambda http: http.post("/v1/audio/translations", files={"file": ("a.wav", FOX)}),
    ),
    ("GET on a POST route", lambda http: http.get("/v1/audio/transcriptions")),
    ("unknown route", lambda http: http.get("/v1/../../etc/passwd")),
    ("model lookup of a NUL", lambda http: http.get("/v1/models/%00")),
    (
        "settings: invalid JSON",
        lambda http: http.post("/v1/settings/model", content=b"{", headers={"Content-Type": "application/json"}),
    ),
    ("settings: unknown model", lambda http: http.post("/v1/settings/model", json={"model_id": "nope"})),
    ("unload: neither model nor all", lambda http: http.post("/v1/model/unload")),
    ("load: ttl 1e20", lambda http: http.post("/v1/model/load", params={"model": "tiny.en", "ttl": "1e20"})),
]


def _live_url(server: Server, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/v1/audio/transcriptions/stream{query}"


async def _live(server: Server, frames: list[str | bytes], query: str = "") -> tuple[list[dict[str, Any]], int | None]:
    """Send `frames`, then read until the server closes; its messages and close code."""
    messages: list[dict[str, Any]] = []
    async with connect(_live_url(server, query), max_size=2**22) as ws:
        try:
            for frame in frames:
                await ws.send(frame)
        except ConnectionClosed:
            pass  # the server may refuse before the last frame is sent; what it said is still read
        try:
            async with asyncio.timeout(30):
                async for message in ws:
                    if isinstance(message, str):
                        messages.append(json.loads(message))
        except ConnectionClosed:
            pass
        return messages, ws.close_code


SILENCE_20MS = b"\0" * 640

#: (case, frames, query): each must end with an `error` and a close that is not 1011.
LIVE_CASES: list[tuple[str, list[str | bytes], str]] = [
    ("odd-length PCM", [b"\0" * 641], ""),
    ("frame over the size cap", [b"\0" * (1 << 21)], ""),
    ("text frame that is not JSON", ["{nope"], ""),
    ("JSON that is not an object", ["[1, 2, 3]"], ""),
    ("unknown message type", [json.dumps({"type": "explode"})], ""),
    ("config with an unknown key", [json.dumps({"type": "config", "beam_size": 99})], ""),
    ("config with a sample rate of 0", [json.dumps({"type": "config", "sample_rate": 0})], ""),
    ("config with a language of the wrong type", [json.dumps({"type": "config", "language": 5})], ""),
    ("config after audio", [SILENCE_20MS, json.dumps({"type": "config", "language": "en"})], ""),
    ("unknown model in the query", [SILENCE_20MS], "?model=no-such-model"),
    ("sample rate 1 Hz in the query", [SILENCE_20MS], "?sample_rate=1"),
    ("10 MB text frame", ["x" * 10_000_000], ""),
]


def test_http_corpus_gets_only_4xx_and_disturbs_no_worker(corpus_server: Server) -> None:
    assert corpus_server.transcribe("short.wav").status_code == 200
    pid = corpus_server.model()["pid"]
    answers: dict[str, int] = {}
    shapeless: list[str] = []
    with httpx.Client(base_url=corpus_server.url, timeout=60) as http:
        for case, send in HTTP_CASES:
            try:
                response = send(http)
            except httpx.TransportError as exc:  # no answer at all is the worst answer
                shapeless.append(f"{case}: {exc}")
                continue
            answers[case] = response.status_code
            try:
                error = response.json()["error"]
                assert {"message", "type", "param", "code"} <= set(error) and error["message"]
            except (ValueError, KeyError, TypeError, AssertionError):
                shapeless.append(case)
    server_errors = {case: status for case, status in answers.items() if status >= 500}
    not_refused = {case: status for case, status in answers.items() if status < 400}
    crashed = corpus_server.model()["pid"] != pid or corpus_server.proc.poll() is not None
    record_figure(
        "hostile input",
        "HTTP: cases / 5xx / worker or supervisor crashes",
        f"{len(HTTP_CASES)} / {len(server_errors)} / {int(crashed)}",
    )
    assert server_errors == {} and not_refused == {} and shapeless == [], (server_errors, not_refused, shapeless)
    assert not crashed
    assert corpus_server.transcribe("fox.wav").status_code == 200
    assert "Traceback" not in corpus_server.log()


def test_live_corpus_gets_errors_and_no_internal_closes(corpus_server: Server) -> None:
    assert corpus_server.transcribe("short.wav").status_code == 200
    pid = corpus_server.model()["pid"]
    bad: dict[str, Any] = {}
    for case, frames, query in LIVE_CASES:
        messages, code = asyncio.run(_live(corpus_server, frames, query))
        errors = [m for m in messages if m.get("type") == "error"]
        if not errors or not errors[-1].get("message") or code in (None, 1000, 1011):
            bad[case] = (code, messages[-3:])
    crashed = corpus_server.model()["pid"] != pid or corpus_server.proc.poll() is not None
    record_figure(
        "hostile input",
        "live WebSocket: cases / internal-error closes / crashes",
        f"{len(LIVE_CASES)} / {sum(1 for c in bad.values() if c[0] == 1011)} / {int(crashed)}",
    )
    assert bad == {}, bad
    assert not crashed
    assert "Traceback" not in corpus_server.log()


MB = 1 << 20


def _send_then_read(port: int, request: bytes) -> bytes:
    """Send all of `request` without reading, then read the answer to the end."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a reset shows in the answer
            sock.sendall(request)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
        return answer


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_upload_over_the_limit_gets_its_413_while_still_sending(corpus_server: Server, framing: str) -> None:
    """The server answers 413 before reading the body (with Content-Length) or once it has
    counted too much (chunked). A client still sending must then read that answer, not a
    connection reset: a socket closed with unread bytes is reset by the kernel, and the
    reset destroys what the client had not read yet."""
    # Far more than the socket buffers hold: the client is mid-send when the answer comes.
    part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n' + b"\0" * 24_000_000
    head = "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=x\r\n"
    if framing == "content-length":
        request = f"{head}Content-Length: {len(part)}\r\n\r\n".encode() + part
    else:
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (part[i : i + MB] for i in range(0, len(part), MB)))
        request = f"{head}Transfer-Encoding: chunked\r\n\r\n".encode() + chunks + b"0\r\n\r\n"
    answer = _send_then_read(corpus_server.port, request)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "file_too_large"
