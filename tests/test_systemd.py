"""Running as a systemd service: sd_notify, health probes, the SIGTERM drain, and the unit.

Each server here is a real supervisor process with real workers, stopped by a real SIGTERM.
systemd itself cannot run here, so its end of $NOTIFY_SOCKET is what it is on a real
machine: an AF_UNIX datagram socket that reads `KEY=value` lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import (
    ASSETS,
    REPO,
    Server,
    all_worker_pids_with_parent_arg,
    key_words_found,
    make_long_clip,
    record_figure,
    wait_for,
    worker_pids,
)
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

SECTION = "service"
UNIT = REPO / "systemd" / "asr-supervisor.service"

CONFIG = """
[server]
default_model = "tiny.en"
{server}
[models."tiny.en"]
source = "bundled"
ttl = -1
preload = true
"""


class Systemd:
    """systemd's end of $NOTIFY_SOCKET: reads the datagrams the supervisor sends."""

    def __init__(self) -> None:
        self.address = f"@asr-test-{uuid.uuid4().hex}"  # abstract: no path, nothing to clean up
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.received: list[list[str]] = []

    def expect(self, line: str, timeout: float = 30) -> list[str]:
        """The first datagram not yet read that has `line` (or a line starting with it)."""
        for message in self.received:
            if any(got == line or got.startswith(line) for got in message):
                self.received.remove(message)
                return message
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                message = self.sock.recv(4096).decode().splitlines()
            except TimeoutError:
                break
            if any(got == line or got.startswith(line) for got in message):
                return message
            self.received.append(message)
        raise AssertionError(f"no {line!r} from the supervisor within {timeout}s; got {self.received}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def systemd() -> Iterator[Systemd]:
    listener = Systemd()
    yield listener
    listener.close()


def _stop(server: Server) -> tuple[int, float]:
    """SIGTERM, as `systemctl stop` sends it; the exit status and the seconds it took."""
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(60)
    return code, time.monotonic() - started


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _no_workers_left(pid: int) -> None:
    wait_for(lambda: not all_worker_pids_with_parent_arg(pid), 10, what=f"workers of {pid} to exit")


def test_systemd_is_told_ready_status_watchdog_and_stopping(make_server, systemd: Systemd) -> None:  # type: ignore[no-untyped-def]
    # 0.2 s: the supervisor must ping every 0.1 s, so a few pings come quickly.
    env = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "200000"}
    server: Server = make_server(CONFIG.format(server='api_keys = ["secret"]'), env=env, wait=False)

    ready = systemd.expect("READY=1")
    # READY=1 only once both listeners accept: a client told "started" is served.
    socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    socket.create_connection(("127.0.0.1", server.wyoming_port), timeout=1).close()
    assert f"MAINPID={server.pid}" in ready
    assert any(line.startswith("STATUS=") for line in ready), ready

    # STATUS= follows the models: the preloaded tiny.en shows up as loaded once it is.
    status = systemd.expect("STATUS=loaded: tiny.en")
    assert "default: tiny.en" in status[-1]
    pings = [systemd.expect("WATCHDOG=1", timeout=5) for _ in range(3)]
    assert len(pings) == 3

    # The watchdog is the supervisor's alone: a worker that inherited $NOTIFY_SOCKET and
    # pinged would keep a wedged supervisor alive.
    for pid in worker_pids(server.pid):
        assert "NOTIFY_SOCKET" not in psutil.Process(pid).environ()

    # Probes answer without the API key that /v1 needs.
    assert server.client.get("/v1/models").status_code == 401
    live = server.client.get("/health/live")
    assert live.status_code == 200 and live.json()["status"] == "alive"
    ready_probe = server.client.get("/health/ready")
    assert ready_probe.status_code == 200, ready_probe.text
    assert ready_probe.json()["checks"]["listening"] is True

    code, elapsed = _stop(server)
    assert systemd.expect("STOPPING=1", timeout=5)
    assert code == 0, server.log()
    record_figure(SECTION, "SIGTERM to exit, idle (one model loaded)", f"{elapsed:.2f} s")
    _no_workers_left(server.pid)


def test_ready_is_503_with_the_reason_while_the_default_model_fails(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"not a model")  # passes the start-up file check, fails to load
    config = f"""
    [server]
    default_model = "broken"
    [models."broken"]
    source = "{broken}"
    preload = true
    [models."tiny.en"]
    source = "bundled"
    """
    server: Server = make_server(config)
    wait_for(lambda: server.model("broken")["state"] == "failed", 30, what="the broken model to fail")
    probe = server.client.get("/health/ready")
    assert probe.status_code == 503, probe.text
    body = probe.json()
    assert body["status"] == "not_ready"
    assert "broken" in body["reason"] and "failed to load" in body["reason"], body
    assert body["checks"]["default_model_state"] == "failed"
    assert server.client.get("/health/live").status_code == 200  # the process itself is fine

    # The default moved to a model that loads: ready again.
    assert server.client.post("/v1/settings/model", json={"model_id": "tiny.en"}).status_code == 200
    assert server.client.get("/health/ready").status_code == 200


def test_sigterm_lets_an_http_request_in_flight_finish_then_exits_0(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(CONFIG.format(server=""))
    kept_alive = httpx.Client(base_url=server.url, timeout=30)
    assert kept_alive.get("/health").status_code == 200  # an idle kept-alive connection now
    clip = make_long_clip(tmp_path, 2)
    with server.request_in_flight(clip) as pending:
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: _refuses(server.port), 10, what="HTTP to stop accepting")
        # The idle kept-alive connection was closed: a new request on it is refused, not served.
        with contextlib.suppress(httpx.TransportError):
            late = kept_alive.get("/health")
            assert late.status_code == 503, late.text
        response = pending.result(timeout=60)
    code = server.proc.wait(60)
    elapsed = time.monotonic() - started
    kept_alive.close()
    assert response.status_code == 200, response.text
    # The whole clip's transcript, not a cut one. (tiny.en hears the fox clip badly when it
    # follows the weather clip: "The Wic Drown Fuck Stump", so words from every part count.)
    expected = ["morning", "weather", "garden", "lazy", "dog", "kitchen", "lights"]
    assert len(key_words_found(response.json()["text"], expected)) >= 4, response.json()["text"]
    assert code == 0, server.log()
    record_figure(SECTION, "SIGTERM to exit, a 29 s clip in flight (tiny.en, CPU)", f"{elapsed:.2f} s")
    _no_workers_left(server.pid)


def test_a_request_longer_than_drain_timeout_is_cut_and_the_server_still_exits_0(make_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(CONFIG.format(server="drain_timeout = 0.5"))
    clip = make_long_clip(tmp_path, 6)  # decodes for many seconds: far past the drain
    with server.request_in_flight(clip) as pending:
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(60)
        elapsed = time.monotonic() - started
        with contextlib.suppress(httpx.TransportError):
            cut = pending.result(timeout=30)
            assert cut.status_code != 200, "the request finished: drain_timeout was not applied"
    assert code == 0, server.log()
    record_figure(SECTION, "SIGTERM to exit, drain_timeout = 0.5 s, a long clip in flight (cut)", f"{elapsed:.2f} s")
    assert elapsed < 20, f"stopped after {elapsed:.1f}s with drain_timeout = 0.5"
    _no_workers_left(server.pid)


def _pcm(name: str) -> tuple[bytes, int]:
    with wave.open(str(ASSETS / f"{name}.wav"), "rb") as clip:
        return clip.readframes(clip.getnframes()), clip.getframerate()


def test_sigterm_lets_a_wyoming_utterance_being_spoken_get_its_transcript(make_server) -> None:  # type: ignore[no-untyped-def]
    server: Server = make_server(CONFIG.format(server=""))
    audio, rate = _pcm("fox")
    half = len(audio) // 2 // 2048 * 2048

    def chunks(data: bytes) -> Iterator[AudioChunk]:
        for i in range(0, len(data), 2048):
            yield AudioChunk(rate=rate, width=2, channels=1, audio=data[i : i + 2048])

    async def scenario() -> tuple[str, bool]:
        """The transcript, and whether anything came before the server closed the connection."""
        async with (
            AsyncTcpClient("127.0.0.1", server.wyoming_port) as idle,
            AsyncTcpClient("127.0.0.1", server.wyoming_port) as speaker,
        ):
            await idle.write_event(Describe().event())
            info = await asyncio.wait_for(idle.read_event(), 10)
            assert info is not None and Info.is_type(info.type)

            await speaker.write_event(Transcribe(language="en").event())
            await speaker.write_event(AudioStart(rate=rate, width=2, channels=1).event())
            for chunk in chunks(audio[:half]):
                await speaker.write_event(chunk.event())
            # Half the sentence is in when the server is told to stop.
            await asyncio.to_thread(wait_for, lambda: server.model()["in_flight"] == 1, 30, what="the utterance")
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(wait_for, lambda: _refuses(server.wyoming_port), 10, what="Wyoming to refuse")

            # The idle connection is closed at once; the speaker finishes the sentence.
            assert await asyncio.wait_for(idle.read_event(), 10) is None
            for chunk in chunks(audio[half:]):
                await speaker.write_event(chunk.event())
            await speaker.write_event(AudioStop().event())
            events = []  # transcript, then transcript-stop (it asked with transcribe), then the end
            while (event := await asyncio.wait_for(speaker.read_event(), 30)) is not None:
                events.append(event)
            texts = [Transcript.from_event(e).text for e in events if Transcript.is_type(e.type)]
            return texts[0] if texts else "", bool(events)

    text, answered = asyncio.run(scenario())
    assert answered
    assert key_words_found(text, ["quick", "brown", "fox", "lazy"]) == ["quick", "brown", "fox", "lazy"], text
    assert server.proc.wait(60) == 0, server.log()
    _no_workers_left(server.pid)


# -- the unit file ----------------------------------------------------------------------------


def _unit_for_this_checkout(tmp_path: Path) -> Path:
    """The shipped unit with ExecStart at this venv's asr-supervisor, which verify requires to exist."""
    binary = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "asr-supervisor"
    if not binary.exists():
        binary = REPO / ".venv" / "bin" / "asr-supervisor"
    text = UNIT.read_text()
    assert "ExecStart=/opt/asr-supervisor/.venv/bin/asr-supervisor " in text
    unit = tmp_path / "asr-supervisor.service"
    unit.write_text(text.replace("/opt/asr-supervisor/.venv/bin/asr-supervisor", str(binary)))
    return unit


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (Debian: systemd)"
)


@needs_systemd_analyze
def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = _unit_for_this_checkout(tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert str(unit) not in result.stderr, result.stderr  # no warning about our unit either


@needs_systemd_analyze
def test_the_unit_is_hardened_below_exposure_5(tmp_path: Path) -> None:
    unit = _unit_for_this_checkout(tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)], capture_output=True, text=True
    )
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert found, result.stdout + result.stderr
    exposure = float(found.group(1))
    record_figure(SECTION, "systemd-analyze security exposure", exposure)
    assert exposure < 5, result.stdout


def test_the_unit_waits_long_enough_for_the_shutdown_phases() -> None:
    # drain_timeout + 2 stop phases + the VRAM wait, at their defaults, must fit with margin.
    from supervisor.config import ServerTable

    defaults = ServerTable.model_validate({})
    phases = defaults.drain_timeout + 2 * defaults.stop_timeout + 10.0
    stop_sec = float(re.search(r"^TimeoutStopSec=(\d+)$", UNIT.read_text(), re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert stop_sec >= phases * 1.25, f"TimeoutStopSec={stop_sec:g} leaves no margin over {phases:g} s of phases"
    assert re.search(r"^Type=notify$", UNIT.read_text(), re.MULTILINE)
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", UNIT.read_text(), re.MULTILINE)
