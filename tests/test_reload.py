"""Reloading asr.toml on a running server (SIGHUP, `POST /v1/admin/reload`), with real workers.

Added models serve, removed ones finish what they took on and stop, changed ones are
replaced once idle, an invalid file changes nothing, and no request in flight fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import wave
from collections.abc import Callable

import httpx
import psutil
from conftest import ASSETS, Server, key_words_found, record_figure, wait_for, worker_pids
from websockets.asyncio.client import connect
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error

ONE = """
[server]
default_model = "tiny.en"

[defaults]
ttl = -1
compute_type = "int8"

[models."tiny.en"]
source = "bundled"
"""

SECOND = """
[models."second"]
source = "bundled"
description = "the bundled model under another name"
"""


def _reload(server: Server, config: str, key: str | None = None) -> httpx.Response:
    server.config_path.write_text(textwrap.dedent(config))
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return server.client.post("/v1/admin/reload", headers=headers)


def _model_ids(server: Server, key: str | None = None) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = server.client.get("/v1/models", headers=headers)
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["data"]]


def _asrctl(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ASR_URL", "ASR_API_KEY")} | {"ASR_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "supervisor.ctl", *args], capture_output=True, text=True, timeout=60, env=env
    )


def _transcribe(server: Server, model: str, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    fox = (ASSETS / "fox.wav").read_bytes()
    return server.client.post(
        "/v1/audio/transcriptions", files={"file": ("fox.wav", fox)}, data={"model": model}, headers=headers
    )


def test_an_added_model_serves_and_a_removed_one_finishes_its_request(make_server: Callable[..., Server]) -> None:
    server = make_server(ONE)
    added = _reload(server, ONE + SECOND)
    assert added.status_code == 200, added.text
    report = added.json()
    assert report["added"] == ["second"] and report["removed"] == [] and report["changed"]
    assert report["needs_restart"] == []  # the flags it started with (--port ...) still stand
    assert _model_ids(server) == ["tiny.en", "second"]
    first = _transcribe(server, "second")
    assert first.status_code == 200 and "fox" in first.json()["text"].lower()
    pid = server.model("second")["pid"]

    clip = (ASSETS / "weather.wav").read_bytes()
    with server.request_in_flight(clip, model="second") as pending:
        with server.held("second"):  # its worker keeps the request in flight until this block ends
            removed = _reload(server, ONE)
            assert removed.status_code == 200 and removed.json()["removed"] == ["second"], removed.text
            assert not pending.done()  # the reload did not wait for it, nor end it
            refused = _transcribe(server, "second")
            assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found", refused.text
            assert "second" not in _model_ids(server)
            # /health still shows its worker, whose memory and PID are real until it ends.
            retiring = server.health()["models"]["second"]
            assert retiring["retiring"] is True and retiring["pid"] == pid and retiring["in_flight"] == 1
            assert pid in worker_pids(server.pid)  # still holding the request it took on
        assert pending.result().status_code == 200, pending.result().text
    wait_for(lambda: pid not in worker_pids(server.pid), 20, what="the removed model's worker to end")
    wait_for(lambda: "second" not in server.health()["models"], 10, what="the removed model to leave /health")
    assert "removed by a reload: retired" in server.log()
    assert _transcribe(server, "tiny.en").status_code == 200


def test_a_changed_model_is_replaced_once_its_request_in_flight_is_done(make_server: Callable[..., Server]) -> None:
    server = make_server(ONE)
    assert server.transcribe().status_code == 200
    old = server.model()
    assert old["compute_type"] == "int8"

    changed = ONE.replace('compute_type = "int8"', 'compute_type = "float32"').replace("ttl = -1", "ttl = 3600")
    clip = (ASSETS / "weather.wav").read_bytes()
    with server.request_in_flight(clip) as pending, concurrent.futures.ThreadPoolExecutor(1) as pool:
        with server.held():  # the old worker keeps the request in flight until this block ends
            reloaded = _reload(server, changed)
            assert reloaded.status_code == 200, reloaded.text
            assert reloaded.json()["changed_models"] == {"tiny.en": "replaced once idle"}
            assert not pending.done() and server.model()["pid"] == old["pid"]  # it finishes where it started
            queued = pool.submit(_transcribe, server, "tiny.en")  # sent mid-drain: waits for the new worker
            wait_for(lambda: server.model()["queued"] == 1, 20, what="the new request to wait for the new worker")
        assert pending.result().status_code == 200, pending.result().text
        assert queued.result().status_code == 200, queued.result().text
    new = server.model()
    assert new["pid"] != old["pid"] and new["compute_type"] == "float32" and new["ttl"] == 3600
    assert new["unloads"] == {"reload": 1}
    wait_for(lambda: old["pid"] not in worker_pids(server.pid), 20, what="the old worker to end")

    # Only the supervisor's keys: applied to the running worker, which stays.
    ttl_only = _reload(server, changed.replace("ttl = 3600", "ttl = 60"))
    assert ttl_only.json()["changed_models"] == {"tiny.en": "applied"}, ttl_only.text
    assert server.model()["pid"] == new["pid"] and server.model()["ttl"] == 60


def test_an_invalid_file_changes_nothing_and_says_why(make_server: Callable[..., Server]) -> None:
    server = make_server(ONE)
    assert server.transcribe().status_code == 200
    pid = server.model()["pid"]
    broken = {
        "not TOML": ONE + "[models.\n",
        "an unknown key": ONE + SECOND + "beam_sise = 3\n",
        "a default that is not served": ONE.replace('default_model = "tiny.en"', 'default_model = "nope"'),
        "a missing model directory": ONE + '[models."local"]\nsource = "/nonexistent/model"\n',
    }
    expected = {
        "not TOML": "not valid TOML",
        "an unknown key": "models.second.beam_sise: unknown key",
        "a default that is not served": "server.default_model: 'nope' is not a served model",
        "a missing model directory": "models.local.source = '/nonexistent/model': no such directory",
    }
    for what, config in broken.items():
        response = _reload(server, config)
        assert response.status_code == 422, (what, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_config" and expected[what] in error["message"], (what, error)
        assert f"reload refused, the running configuration stays: {server.config_path}" in server.log(), what
        assert expected[what] in server.log(), what
    assert _model_ids(server) == ["tiny.en"]
    assert _transcribe(server, "tiny.en").status_code == 200 and server.model()["pid"] == pid

    # asrctl says the same, in one line and a non-zero exit; and what a good file changed.
    refused = _asrctl("reload", url=server.url)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    reason = f"{server.config_path}: models.local.source = '/nonexistent/model': no such directory"
    assert refused.stderr.strip().splitlines() == [
        f"asrctl: the configuration was not reloaded: {reason} (/nonexistent/model) (HTTP 422)"
    ]
    server.config_path.write_text(textwrap.dedent(ONE + SECOND))
    done = _asrctl("reload", url=server.url)
    assert done.returncode == 0 and done.stdout.strip() == "added: second", done


def test_keys_aliases_and_the_default_apply_live_and_listeners_wait_for_a_restart(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(ONE + SECOND)
    assert server.client.post("/v1/settings/model", json={"model_id": "second"}).status_code == 200
    config = (
        ONE.replace(
            "[defaults]",
            'api_keys = ["k1"]\nmax_loaded_models = 2\nmax_upload_mb = 5\n\n[aliases]\nfast = "tiny.en"\n\n[defaults]',
        )
        + SECOND
    )
    report = _reload(server, config).json()
    assert set(report["applied"]) == {"api_keys", "aliases", "max_loaded_models"}, report
    assert server.health()["capacity"]["max_loaded_models"] == 2
    assert report["needs_restart"] == ["max_upload_mb"]
    assert "server.max_upload_mb changed (200.0 → 5.0) but needs a restart; 200.0 stays in force" in server.log()
    assert server.client.get("/v1/models").status_code == 401  # the new key is asked for at once
    assert _transcribe(server, "fast", key="k1").status_code == 200  # the new alias
    # A default chosen at run time stands while the file's default_model does not change.
    assert server.health()["default_model"] == "second"

    moved = _reload(server, config.replace('default_model = "tiny.en"', 'default_model = "second"'), key="k1")
    assert moved.status_code == 200 and moved.json()["applied"] == ["default_model"], moved.text
    back = _reload(server, ONE + SECOND, key="k1")  # no keys in the file: the route is open again
    assert back.status_code == 200 and set(back.json()["applied"]) >= {"api_keys", "aliases", "default_model"}
    assert server.health()["default_model"] == "tiny.en" and _model_ids(server) == ["tiny.en", "second"]


def _datagrams(sock: socket.socket, until: str, timeout: float = 20) -> list[str]:
    """Lines systemd would read from $NOTIFY_SOCKET, up to the datagram that has `until`."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while until not in lines:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        lines += sock.recv(4096).decode().splitlines()  # TimeoutError past the deadline
    return lines


def test_sighup_reloads_and_a_bad_file_keeps_the_server_up(make_server: Callable[..., Server]) -> None:
    address = f"@asr-reload-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + address[1:])
        server = make_server(ONE, env={"NOTIFY_SOCKET": address})
        _datagrams(systemd, "READY=1")  # started
        server.config_path.write_text(textwrap.dedent(ONE + SECOND))
        server.proc.send_signal(signal.SIGHUP)
        # `systemctl reload` waits for the reload's end: RELOADING=1 (with the time), then READY=1.
        lines = _datagrams(systemd, "READY=1")
        assert "RELOADING=1" in lines and any(line.startswith("MONOTONIC_USEC=") for line in lines), lines
        assert lines.index("RELOADING=1") < lines.index("READY=1")
    wait_for(lambda: "second" in _model_ids(server), 20, what="SIGHUP to add the model")
    assert "SIGHUP: reloading the configuration" in server.log()
    assert "reload of" in server.log() and "added second" in server.log()

    server.config_path.write_text("[server\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in server.log(), 20, what="the bad file to be refused")
    assert server.proc.poll() is None and _model_ids(server) == ["tiny.en", "second"]
    assert _transcribe(server, "second").status_code == 200


def test_no_request_fails_across_reloads_under_load(make_server: Callable[..., Server]) -> None:
    """Clients keep sending while five reloads add and remove a model and change the busy one's
    options (so its worker is replaced under load each time): every request gets its 200."""
    server = make_server(ONE, warm_spare=True)
    assert server.transcribe().status_code == 200
    # Each one changes tiny.en's options: its worker is replaced while requests are in flight.
    configs = [ONE.replace("ttl = -1", "ttl = -1\nbeam_size = 1") + SECOND, ONE] * 3
    stop = threading.Event()
    statuses: list[int] = []

    def client() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            fox = (ASSETS / "fox.wav").read_bytes()
            while not stop.is_set():
                response = http.post("/v1/audio/transcriptions", files={"file": ("fox.wav", fox)})
                statuses.append(response.status_code)

    reload_seconds = []
    clients = [threading.Thread(target=client) for _ in range(3)]
    for thread in clients:
        thread.start()
    try:
        for config in configs[:5]:
            wait_for(lambda: server.model()["in_flight"] >= 1, 30, what="a request in flight")
            pid, served = server.model()["pid"], len(statuses)
            started = time.monotonic()
            response = _reload(server, config)
            reload_seconds.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
            # The next reload once the replacement worker has served a few.
            wait_for(lambda pid=pid: server.model()["pid"] not in (None, pid), 60, what="the replacement worker")
            wait_for(lambda served=served: len(statuses) >= served + 3, 60, what="requests on the new worker")
    finally:
        stop.set()
        for thread in clients:
            thread.join(120)
    assert statuses and set(statuses) == {200}, statuses
    record_figure("reload", "requests across 5 reloads (3 clients), all 200", len(statuses))
    record_figure("reload", "admin reload call, slowest (s)", f"{max(reload_seconds):.3f}")
    assert psutil.pid_exists(server.pid)


def _pcm(name: str) -> bytes:
    with wave.open(str(ASSETS / f"{name}.wav"), "rb") as clip:
        return clip.readframes(clip.getnframes())


def test_wyoming_and_live_sessions_in_flight_go_on_across_a_reload(make_server: Callable[..., Server]) -> None:
    """A Wyoming utterance on a model whose worker the reload replaces gets its whole transcript; a
    live WebSocket session on a model whose only change is the supervisor's keys goes on untouched."""
    # A session asked to wind down would get 0.5 s to finish, then 1012: far less than it lasts.
    one = ONE.replace("[server]", "[server]\nsession_drain_timeout = 0.5")
    server = make_server(one + SECOND)
    assert _transcribe(server, "tiny.en").status_code == 200 and _transcribe(server, "second").status_code == 200
    old_pid = server.model()["pid"]
    fox, silence = _pcm("fox"), b"\0\0" * 16000
    changed = one.replace('source = "bundled"', 'source = "bundled"\ncompute_type = "float32"') + SECOND.replace(
        'source = "bundled"', 'source = "bundled"\nttl = 600'
    )

    async def live_session() -> tuple[list[dict[str, str]], int | None]:
        messages = []
        url = server.url.replace("http://", "ws://") + "/v1/audio/transcriptions/stream?model=second"
        async with connect(url) as ws:
            for audio in (fox + silence, _pcm("short") + silence):  # two utterances, paced: it spans the reload
                for i in range(0, len(audio), 3200):
                    await ws.send(audio[i : i + 3200])
                    await asyncio.sleep(0.05)
            await ws.send(json.dumps({"type": "end"}))
            async for message in ws:
                messages.append(json.loads(message))
        return messages, ws.close_code

    async def scenario() -> tuple[list[dict[str, str]], int | None, str, httpx.Response]:
        talking = asyncio.create_task(live_session())
        await asyncio.to_thread(wait_for, lambda: server.model("second")["in_flight"] == 1, 30, 0.05, "the session")
        async with AsyncTcpClient("127.0.0.1", server.wyoming_port) as client:
            await client.write_event(Transcribe(language="en").event())
            await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
            half = len(fox) // 2 // 2048 * 2048
            for i in range(0, half, 2048):
                await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=fox[i : i + 2048]).event())
            await asyncio.to_thread(wait_for, lambda: server.model()["in_flight"] == 1, 30, 0.05, "the utterance")
            reloaded = await asyncio.to_thread(_reload, server, changed)
            for i in range(half, len(fox), 2048):
                await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=fox[i : i + 2048]).event())
            await client.write_event(AudioStop().event())
            while (event := await asyncio.wait_for(client.read_event(), 60)) is not None:
                if Transcript.is_type(event.type) or Error.is_type(event.type):
                    break
            assert event is not None and Transcript.is_type(event.type), event
            text = Transcript.from_event(event).text
        messages, close_code = await talking
        return messages, close_code, text, reloaded

    messages, close_code, text, reloaded = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert reloaded.json()["changed_models"] == {"tiny.en": "replaced once idle", "second": "applied"}, reloaded.text
    assert key_words_found(text, ["quick", "brown", "fox", "lazy"]) == ["quick", "brown", "fox", "lazy"], text
    finals = [m for m in messages if m["type"] == "final"]
    assert len(finals) == 2 and not [m for m in messages if m["type"] == "error"], messages
    assert close_code == 1000
    wait_for(lambda: server.model()["pid"] not in (None, old_pid), 30, what="tiny.en's new worker")
    assert server.model()["compute_type"] == "float32" and server.model("second")["ttl"] == 600
