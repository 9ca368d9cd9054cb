"""Logs an operator reads: one line per request, the same id on both sides, JSON when asked.

A real supervisor with real workers; the assertions read the server's own output (stdout
and stderr, as journald would get them).
"""

from __future__ import annotations

import asyncio
import json
import re
import wave
from collections.abc import Callable
from typing import Any

from conftest import ASSETS, Server, wait_for
from test_metrics import wyoming_transcribe

CONFIG = """
[models."tiny.en"]
source = "bundled"
ttl = -1
"""


def _request_lines(server: Server, request_id: str) -> list[str]:
    return [line for line in server.log().splitlines() if f"request={request_id}" in line]


def _fox_seconds() -> float:
    with wave.open(str(ASSETS / "fox.wav"), "rb") as w:
        return w.getnframes() / w.getframerate()


def test_each_request_gets_one_line_with_its_id_model_worker_and_timings(shared_server: Server) -> None:
    server = shared_server
    mark = len(server.log())  # what came before is other tests' output
    response = server.transcribe("fox.wav")
    assert response.status_code == 200
    request_id, pid = response.headers["x-request-id"], response.headers["x-asr-worker-pid"]
    wait_for(lambda: _request_lines(server, request_id), 10, what="the request's log line")
    [line] = _request_lines(server, request_id)
    fields = dict(re.findall(r"(\w+)=(\S+)", line))
    assert fields["interface"] == "http" and fields["model"] == "tiny.en" and fields["pid"] == pid
    assert fields["status"] == "ok"
    assert abs(float(fields["audio_s"]) - _fox_seconds()) < 0.1
    assert float(fields["total_s"]) >= float(fields["decode_s"]) > 0

    # Audio the worker refuses: its line and the supervisor's carry the same id.
    bad = server.client.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"not audio at all" * 64)})
    assert bad.status_code == 400
    refused = re.compile(r"worker\[pid=\d+\] INFO request=(\w+) refused \(bad_audio\)")
    wait_for(lambda: refused.search(server.log(mark)), 10, what="the worker's line about the refused request")
    match = refused.search(server.log(mark))
    assert match is not None
    wait_for(lambda: len(_request_lines(server, match[1])) == 2, 10, what="the supervisor's line for the same id")
    supervisor_line = next(line for line in _request_lines(server, match[1]) if "asr.request" in line)
    assert "status=bad_audio" in supervisor_line and "code=invalid_audio" in supervisor_line

    # Wyoming requests are logged the same way.
    with wave.open(str(ASSETS / "fox.wav"), "rb") as w:
        audio, rate = w.readframes(w.getnframes()), w.getframerate()
    assert "fox" in asyncio.run(wyoming_transcribe(server.wyoming_port, audio, rate)).lower()
    wait_for(lambda: "interface=wyoming" in server.log(mark), 10, what="the Wyoming request's line")
    assert re.search(
        r"asr\.request request=\w+ interface=wyoming \S+ model=tiny\.en pid=\d+ status=ok", server.log(mark)
    )


def test_json_logs_are_one_object_per_line_from_every_process(make_server: Callable[..., Server]) -> None:
    server = make_server(CONFIG, "--log-format", "json")
    response = server.transcribe("fox.wav")
    assert response.status_code == 200
    request_id, pid = response.headers["x-request-id"], int(response.headers["x-asr-worker-pid"])

    def records() -> list[dict[str, Any]]:
        return [json.loads(line) for line in server.log().splitlines() if line.strip()]  # each line parses

    wait_for(lambda: any(r.get("request_id") == request_id for r in records()), 10, what="the request's record")
    [request] = [r for r in records() if r.get("request_id") == request_id and r["logger"] == "asr.request"]
    assert request["level"] == "INFO" and request["role"] == "supervisor"
    assert request["model"] == "tiny.en" and request["worker_pid"] == pid and request["status"] == "ok"
    assert abs(request["audio_seconds"] - _fox_seconds()) < 0.1
    assert request["total_seconds"] >= request["decode_seconds"] > 0
    # The worker writes JSON too, and says who it is; so does uvicorn.
    assert any(r["role"] == "worker" and r["pid"] == pid for r in records())
    assert any(r["logger"].startswith("uvicorn") for r in records())
