"""A client that hangs up mid-transcription is not served: its worker stops decoding.

Before, a non-streaming client that gave up on a long file left its worker decoding for
minutes, holding the model busy (and safe from its TTL) for nobody.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import psutil
import pytest
from conftest import BASIC_CONFIG, Server, make_long_clip, server_fixture, wait_for

# One window a batch: the first segment of a long file (and a stop) come after one window's
# decoding, not eight, and the test is about the hang-up, not the batch.
server = server_fixture(BASIC_CONFIG + "batch_size = 1\n")

BOUNDARY = "hangup"


def _cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _cpu_used(proc: psutil.Process, window: float = 0.5) -> float:
    """CPU seconds the process used over the next `window` seconds (a measurement, not a wait)."""
    before = _cpu_seconds(proc)
    time.sleep(window)
    return _cpu_seconds(proc) - before


def _upload(clip: bytes, stream: bool) -> bytes:
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="stream"\r\n\r\n{str(stream).lower()}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="long.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    body += clip + f"\r\n--{BOUNDARY}--\r\n".encode()
    head = (
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_a_client_that_hangs_up_stops_its_workers_decoding(server: Server, tmp_path: Path, stream: bool) -> None:
    assert server.transcribe("fox.wav").status_code == 200  # the model is loaded
    worker = psutil.Process(server.model()["pid"])
    clip = make_long_clip(tmp_path, repeats=40, rate=8000)  # ~10 min of audio: most of a minute to decode

    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_upload(clip, stream))
        wait_for(lambda: server.model()["in_flight"] == 1, 30, what="the request to reach the model")
        if stream:
            sock.settimeout(90)  # a first 30 s chunk on a loaded 2-core machine
            received = b""
            while b"transcript.text.delta" not in received:  # the stream has begun
                chunk = sock.recv(65536)
                assert chunk, f"the stream ended early: {received!r}"
                received += chunk
        wait_for(lambda: _cpu_used(worker) > 0.2, 30, what="the worker to be decoding")
    # The client is gone: its request must end, and the worker must stop decoding.
    wait_for(lambda: server.model()["in_flight"] == 0, 15, what="the abandoned request to end")
    # faster-whisper checks between 30 s chunks: it stops within one chunk's decoding time.
    wait_for(lambda: _cpu_used(worker) < 0.1, 60, what="the worker to stop decoding")
    if not stream:  # a stream that has begun is ended by Starlette, which logs nothing
        assert "the client went away" in server.log()

    # Same worker, ready for the next client.
    response = server.transcribe("fox.wav")
    assert response.status_code == 200
    assert "fox" in response.json()["text"].lower()
    assert server.model()["pid"] == worker.pid
