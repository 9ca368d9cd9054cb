"""The shipped HAProxy config in front of two real supervisors on loopback.

`deploy/haproxy/haproxy.cfg` is checked by HAProxy itself, then run with its boxes pointed
at two supervisors (tiny.en under the names "a" and "b"): clients with the official OpenAI
SDK and a model's base URL reach the box that model hashes to, so each model is loaded on
one box only; plain `/v1/` requests, the live WebSocket and Wyoming go through too; and a
box that drains (SIGTERM) gets no new work while the requests keep succeeding.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ASSETS, Server, free_port, start_server, wait_for
from openai import OpenAI
from websockets.asyncio.client import connect
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient

SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "haproxy.cfg"
CONFIG = """
[server]
default_model = "a"

[defaults]
ttl = -1

[models.a]
source = "bundled"

[models.b]
source = "bundled"
"""

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs Debian's haproxy (.ci/run installs it)")


def test_haproxy_accepts_the_shipped_config() -> None:
    checked = subprocess.run(["haproxy", "-c", "-f", str(SHIPPED)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "WARNING" not in checked.stdout + checked.stderr, checked.stdout + checked.stderr


def render(boxes: list[Server], http: int, wyoming: int, stats: int) -> str:
    """The shipped config with its boxes replaced by `boxes` and its ports by free ones."""
    text = SHIPPED.read_text()
    text = text.replace("bind :8080", f"bind 127.0.0.1:{http}").replace("bind :10300", f"bind 127.0.0.1:{wyoming}")
    text = text.replace("bind :8404", f"bind 127.0.0.1:{stats}")

    def boxes_for(block: re.Match[str]) -> str:
        wyoming_backend = "port 8000" in block.group(0)
        lines = [
            f"    server box{i} 127.0.0.1:{box.wyoming_port} check port {box.port}"
            if wyoming_backend
            else f"    server box{i} 127.0.0.1:{box.port} check"
            for i, box in enumerate(boxes, 1)
        ]
        return "\n".join(lines) + "\n"

    rendered, count = re.subn(r"    # boxes: begin\n(?:.*\n)*?    # boxes: end\n", boxes_for, text)
    assert count == 3, "the shipped config's three backends each list the boxes"
    return rendered


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Server], str, int]]:
    tmp = tmp_path_factory.mktemp("fleet")
    boxes = [start_server(tmp, CONFIG, wait=False) for _ in range(2)]
    http, wyoming, stats = free_port(), free_port(), free_port()
    cfg = tmp / "haproxy.cfg"
    cfg.write_text(render(boxes, http, wyoming, stats))
    log = (tmp / "haproxy.log").open("wb")
    haproxy = subprocess.Popen(["haproxy", "-f", str(cfg), "-db"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http}"
    try:
        for box in boxes:
            wait_for(lambda box=box: _ready(box.url), 60, what="a box to be ready")
        # Both boxes up in HAProxy's eyes: its own metrics say so.
        wait_for(lambda: _up(stats) == 6, 30, what="HAProxy to see both boxes up in its three backends")
        yield boxes, url, wyoming
    finally:
        haproxy.terminate()
        haproxy.wait(10)
        log.close()
        for box in boxes:
            box.stop()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _up(stats: int) -> int:
    """How many servers HAProxy reports up, over all backends."""
    try:
        text = httpx.get(f"http://127.0.0.1:{stats}/metrics", timeout=2).text
    except httpx.HTTPError:
        return -1
    return sum(
        1
        for line in text.splitlines()
        if line.startswith("haproxy_server_status{") and 'state="UP"' in line and line.endswith(" 1")
    )


def _loaded_on(boxes: list[Server], model: str) -> list[int]:
    return [i for i, box in enumerate(boxes) if box.model(model)["pid"] is not None]


def test_each_model_is_served_by_the_box_its_name_hashes_to(fleet: tuple[list[Server], str, int]) -> None:
    boxes, url, wyoming = fleet
    pids: dict[str, set[str]] = {}
    for model in ("a", "b"):
        client = OpenAI(base_url=f"{url}/models/{model}/v1", api_key="none")
        for _ in range(3):
            with (ASSETS / "short.wav").open("rb") as f:
                raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=f)
            assert raw.headers["x-asr-model"] == model
            assert "kitchen" in raw.parse().text.lower()
            pids.setdefault(model, set()).add(raw.headers["x-asr-worker-pid"])
    assert all(len(p) == 1 for p in pids.values()), pids  # one worker each, every time
    placement = {model: _loaded_on(boxes, model) for model in ("a", "b")}
    assert all(len(where) == 1 for where in placement.values()), placement  # loaded on one box only
    print("placement (box index per model):", placement)

    # Without a model in the path: any box; the live WebSocket and Wyoming go through too.
    assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 200

    async def live_and_wyoming() -> tuple[dict[str, object], list[dict[str, object]], str]:
        ws_url = url.replace("http://", "ws://") + "/models/b/v1/audio/transcriptions/stream"
        async with connect(ws_url) as ws:
            await ws.send((ASSETS / "short.wav").read_bytes()[44:])
            await ws.send(json.dumps({"type": "end"}))
            ready = json.loads(await ws.recv())
            rest = [json.loads(m) async for m in ws]
        async with AsyncTcpClient("127.0.0.1", wyoming) as client:
            pcm = (ASSETS / "short.wav").read_bytes()[44:]
            await client.write_event(Transcribe().event())
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=pcm).event())
            await client.write_event(AudioStop().event())
            while (event := await asyncio.wait_for(client.read_event(), 60)) is not None:
                if Transcript.is_type(event.type):
                    return ready, rest, Transcript.from_event(event).text
        return ready, rest, ""

    ready, rest, said = asyncio.run(live_and_wyoming())
    assert ready["model"] == "b"
    assert any(m["type"] == "final" and "kitchen" in str(m["text"]).lower() for m in rest), rest
    assert "kitchen" in said.lower(), said


def test_a_draining_box_gets_no_new_work_and_no_request_fails(fleet: tuple[list[Server], str, int]) -> None:
    boxes, url, _ = fleet
    client = OpenAI(base_url=f"{url}/models/a/v1", api_key="none")  # the SDK's default retries

    def transcribe() -> httpx.Headers:
        with (ASSETS / "short.wav").open("rb") as f:
            raw = client.audio.transcriptions.with_raw_response.create(model="a", file=f)
        assert "kitchen" in raw.parse().text.lower()
        return raw.headers

    transcribe()
    (home,) = _loaded_on(boxes, "a")
    other = 1 - home
    boxes[home].proc.send_signal(signal.SIGTERM)  # drains: /health/ready answers 503 at once
    started, served = time.monotonic(), []
    while time.monotonic() - started < 8:  # HAProxy's checks (every 2 s, down after 2) catch up
        served.append(transcribe()["x-asr-worker-pid"])
    assert boxes[other].model("a")["pid"] is not None, "the other box never took model a"
    assert served[-1] == str(boxes[other].model("a")["pid"])
    print(f"drain: {len(served)} requests while box {home} drained, none failed")
