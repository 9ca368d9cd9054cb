"""A real worker process, driven over its ZeroMQ socket the way the supervisor drives it.

No supervisor here: the test binds the ROUTER itself, so it sees every message the worker
sends and can send what the supervisor never would (undecodable parameters, a SHUTDOWN
in the middle of a load). The last tests run a worker in-process for the failures that
cannot be provoked from outside: a sender task that crashes, a LOAD that cannot be decoded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest
import zmq
import zmq.asyncio
from conftest import ASSETS
from silent_hub import SilentHub, silent_hub_env

from common.protocol import (
    WORKER_IDENTITY,
    Dying,
    Error,
    ErrorCode,
    Heartbeat,
    Load,
    Message,
    ModelOptions,
    Payload,
    Ready,
    Result,
    SegmentDecoded,
    Shutdown,
    Spare,
    ToWorker,
    Transcribe,
    TranscribeParams,
    decode,
    encode,
)
from supervisor.config import ModelSpec
from supervisor.workers.process import Timeouts, WorkerError, WorkerProcess, worker_command
from worker.engine.vitals import Vitals
from worker.server import WorkerServer

M = TypeVar("M", bound=Message)
T = TypeVar("T")

BUNDLED = ModelOptions(source="bundled", device="cpu", compute_type="int8")
START_S = 90.0  # imports and a model load on a busy 2-core machine
HEARTBEAT_S = 0.2


class WorkerPeer:
    """The supervisor's end of one worker: a ROUTER socket and the process."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        endpoint = f"ipc://{tmp_path}/w.sock"
        self.sock.bind(endpoint)
        # worker_command passes our PID as --parent-pid: the worker dies with pytest.
        self.proc = subprocess.Popen(
            worker_command("faster-whisper", endpoint, HEARTBEAT_S),
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
        )
        self.heartbeats: list[Heartbeat] = []

    def send(self, message: ToWorker, payload: Payload | None = None) -> None:
        self.send_frames(encode(message, payload))

    def send_frames(self, frames: list[bytes] | list[bytes | memoryview]) -> None:
        self.sock.send_multipart([WORKER_IDENTITY, *frames])

    def receive(self, timeout: float) -> Message:
        """The next message, heartbeats included."""
        if not self.sock.poll(int(timeout * 1000)):
            raise AssertionError(f"no message from the worker within {timeout}s (exit code {self.proc.poll()})")
        identity, *frames = self.sock.recv_multipart()
        assert identity == WORKER_IDENTITY
        message, _ = decode(frames)
        if isinstance(message, Heartbeat):
            self.heartbeats.append(message)
        return message

    def expect(self, kind: type[M], timeout: float = START_S) -> M:
        """Wait for the next message of `kind`, passing over heartbeats and segments."""
        deadline = time.monotonic() + timeout
        while True:
            message = self.receive(max(0.0, deadline - time.monotonic()))
            if isinstance(message, kind):
                return message
            assert isinstance(message, Heartbeat | SegmentDecoded), f"expected {kind.__name__}, got {message!r}"

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.sock.close()
        self.ctx.term()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPeer]:
    """One worker with the bundled model loaded, shared by the tests that only send requests."""
    peer = WorkerPeer(tmp_path_factory.mktemp("worker"))
    try:
        peer.expect(Spare)
        peer.send(Load(BUNDLED))
        ready = peer.expect(Ready)
        assert ready.info.pid == peer.proc.pid and ready.info.device == "cpu" and ready.info.concurrency >= 1
        yield peer
    finally:
        peer.close()


def fox_request(request_id: str, **params: object) -> tuple[Transcribe, bytes]:
    return (
        Transcribe(id=request_id, params=msgspec.convert(params, TranscribeParams)),
        (ASSETS / "fox.wav").read_bytes(),
    )


def test_spare_then_load_then_ready_then_a_transcription(worker: WorkerPeer) -> None:
    worker.send(*fox_request("fox-1"))
    result = worker.expect(Result)
    assert result.id == "fox-1" and "fox" in result.result.text.lower()
    assert result.result.segments and result.result.language == "en"


def test_streamed_segments_come_before_their_result(worker: WorkerPeer) -> None:
    worker.send(*fox_request("fox-stream", stream=True))
    seen: list[Message] = []
    while not isinstance(seen[-1:] and seen[-1], Result):
        message = worker.receive(START_S)
        if not isinstance(message, Heartbeat):
            seen.append(message)
    segments = [m for m in seen if isinstance(m, SegmentDecoded)]
    assert segments and all(m.id == "fox-stream" for m in segments)
    result = seen[-1]
    assert isinstance(result, Result) and [m.segment for m in segments] == result.result.segments


def test_undecodable_params_get_bad_parameter_for_that_id_and_the_worker_keeps_serving(worker: WorkerPeer) -> None:
    head = msgspec.msgpack.encode({"kind": "transcribe", "id": "bad-1", "params": {"beam_size": "five"}})
    worker.send_frames([head, (ASSETS / "fox.wav").read_bytes()])
    error = worker.expect(Error)
    assert (error.id, error.code) == ("bad-1", ErrorCode.BAD_PARAMETER) and "beam_size" in error.message

    worker.send(*fox_request("fox-after-bad"))
    result = worker.expect(Result)
    assert result.id == "fox-after-bad" and "fox" in result.result.text.lower()


def test_bad_audio_is_the_clients_fault_not_a_crash(worker: WorkerPeer) -> None:
    worker.send(Transcribe(id="noise", params=TranscribeParams()), b"this is not audio")
    error = worker.expect(Error)
    assert (error.id, error.code) == ("noise", ErrorCode.BAD_AUDIO)


def test_heartbeats_are_typed_and_count_what_was_served(worker: WorkerPeer) -> None:
    before = worker.expect(Heartbeat, timeout=10)
    assert before.rss_bytes > 0 and before.lanes >= 1 and before.vram_bytes is None  # on the CPU
    assert abs(before.time - time.time()) < 60
    worker.send(*fox_request("fox-counted"))
    assert worker.expect(Result).id == "fox-counted"
    deadline = time.monotonic() + 10
    while (after := worker.expect(Heartbeat, timeout=10)).served <= before.served:
        assert time.monotonic() < deadline, "served never counted the request"
    assert after.served >= before.served + 1 and after.in_flight == 0 and after.lanes_busy == 0
    assert after.last_inference_at is not None and after.last_inference_at >= before.time


def hub_model(tmp_path: Path) -> ModelOptions:
    """A model that is not in the (empty) cache: loading it means downloading it."""
    return ModelOptions(source="Systran/faster-whisper-tiny.en", device="cpu", cache_dir=str(tmp_path / "empty-cache"))


@pytest.mark.parametrize("stop", ["shutdown", "sigterm"])
def test_a_worker_stops_promptly_in_the_middle_of_a_load(tmp_path: Path, stop: str) -> None:
    hub = SilentHub()
    peer = WorkerPeer(tmp_path, silent_hub_env(hub, tmp_path))
    try:
        peer.expect(Spare)
        peer.send(Load(hub_model(tmp_path)))
        assert hub.connected.wait(START_S), "the load never reached the hub"  # it is now stuck downloading
        asked = time.monotonic()
        if stop == "shutdown":
            peer.send(Shutdown())
        else:
            peer.proc.send_signal(signal.SIGTERM)
        code = peer.proc.wait(timeout=5)  # the supervisor's SIGTERM phase would only start after stop_timeout
        assert code == 0 and time.monotonic() - asked < 5
    finally:
        peer.close()
        hub.close()


async def test_vram_is_the_workers_own_sampled_off_the_loop_at_most_every_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls"
    script = tmp_path / "bin" / "nvidia-smi"
    script.parent.mkdir()
    # A stand-in nvidia-smi: our PID holds 1500 MiB, another process 10 MiB; each call is counted.
    script.write_text(f"#!/bin/sh\necho x >> {calls}\nprintf '{os.getpid()}, 1500\\n777, 10\\n'\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{os.environ['PATH']}")

    assert Vitals(cuda=False).vram_bytes() is None  # off CUDA nothing is asked
    vitals = Vitals(cuda=True, vram_every=3600)
    assert vitals.rss_bytes() > 0
    assert await poll(vitals.vram_bytes, 10, "a VRAM sample") == 1500 * 1024 * 1024
    assert calls.read_text().count("x") == 1  # not asked again within the interval


# -- the supervisor's side: WorkerProcess ------------------------------------------------

TIMEOUTS = Timeouts(ready=START_S, stop=10.0, heartbeat_interval=HEARTBEAT_S, heartbeat=30.0)


def spec(options: ModelOptions) -> ModelSpec:
    return ModelSpec(name="under-test", ttl=-1, preload=False, description="", options=options)


async def poll(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while (value := predicate()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


async def test_the_supervisor_keeps_each_workers_latest_heartbeat(tmp_path: Path) -> None:
    ctx = zmq.asyncio.Context()
    exited: list[WorkerProcess] = []
    worker = await WorkerProcess.spawn("faster-whisper", ctx, tmp_path, TIMEOUTS, exited.append)
    try:
        assert worker.last_heartbeat is None
        await worker.load(spec(BUNDLED), exited.append)
        first = await poll(lambda: worker.last_heartbeat, 10, "a first heartbeat")
        assert isinstance(first, Heartbeat) and first.rss_bytes > 0 and first.served == 0
        result = await worker.transcribe((ASSETS / "fox.wav").read_bytes(), TranscribeParams())
        assert "fox" in result.text.lower()
        counted = await poll(
            lambda: (hb := worker.last_heartbeat) and hb.served >= 1 and hb or None,
            10,
            "a heartbeat that counts the request",
        )
        assert counted.last_inference_at is not None and counted.time >= first.time
        assert await worker.stop() == "shutdown"
    finally:
        if worker.is_alive:
            worker.kill()
        ctx.term()


async def test_the_supervisor_stops_a_loading_worker_without_waiting_for_signals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = SilentHub()
    for name, value in silent_hub_env(hub, tmp_path).items():
        monkeypatch.setenv(name, value)  # the worker inherits the supervisor's environment
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    ctx = zmq.asyncio.Context()
    exited: list[WorkerProcess] = []
    worker = await WorkerProcess.spawn("faster-whisper", ctx, tmp_path, TIMEOUTS, exited.append)
    loading = asyncio.create_task(worker.load(spec(hub_model(tmp_path)), exited.append))
    try:
        assert await asyncio.to_thread(hub.connected.wait, START_S), "the load never reached the hub"
        asked = time.monotonic()
        how = await worker.stop()
        assert how == "shutdown" and time.monotonic() - asked < 5  # SIGTERM would have come after 10 s
        with pytest.raises(WorkerError):
            await loading
        assert worker.exit_code == 0 and exited == [worker]
    finally:
        loading.cancel()
        if worker.is_alive:
            worker.kill()
        ctx.term()
        hub.close()


# -- in-process: failures that cannot be provoked from outside -------------------------


class InProcessWorker:
    """A WorkerServer on this event loop with a backend that does not exist (nothing to import)."""

    def __init__(self, tmp_path: Path) -> None:
        self.ctx = zmq.asyncio.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        endpoint = f"ipc://{tmp_path}/in-process.sock"
        self.sock.bind(endpoint)
        self.server = WorkerServer("no-such-backend", endpoint, heartbeat_interval=HEARTBEAT_S)
        self.run = asyncio.create_task(self.server.run())

    async def receive(self) -> Message:
        """The next message, passing over heartbeats (a worker beats in every phase)."""
        while True:
            _, *frames = await asyncio.wait_for(self.sock.recv_multipart(), 10)
            message = decode(frames)[0]
            if not isinstance(message, Heartbeat):
                return message

    async def send_frames(self, frames: list[bytes] | list[bytes | memoryview]) -> None:
        await self.sock.send_multipart([WORKER_IDENTITY, *frames])

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.run, 10)

    def close(self) -> None:
        self.run.cancel()
        self.sock.close()
        self.ctx.term()


async def test_a_crashed_sender_ends_the_worker_with_dying(tmp_path: Path) -> None:
    worker = InProcessWorker(tmp_path)
    try:
        assert isinstance(await worker.receive(), Spare)
        # Before READY a request is refused for its id, not left waiting.
        await worker.send_frames(encode(Transcribe(id="early", params=TranscribeParams()), b"\0\0"))
        early = await worker.receive()
        assert isinstance(early, Error) and (early.id, early.code) == ("early", ErrorCode.INTERNAL)
        # Something the sender cannot encode: its task fails, as a bug in it would.
        worker.server._outbox.put_nowait(object())  # type: ignore[arg-type]
        dying = await worker.receive()
        assert isinstance(dying, Dying) and "sender" in dying.reason
        assert await worker.exit_code() == 1
    finally:
        worker.close()


async def test_an_undecodable_load_ends_the_worker_with_dying(tmp_path: Path) -> None:
    worker = InProcessWorker(tmp_path)
    try:
        assert isinstance(await worker.receive(), Spare)
        await worker.send_frames([msgspec.msgpack.encode({"kind": "load", "options": {"device": "tpu"}})])
        dying = await worker.receive()
        assert isinstance(dying, Dying) and "LOAD" in dying.reason and "device" in dying.reason
        assert await worker.exit_code() == 1
    finally:
        worker.close()


async def test_a_load_failure_is_reported_with_dying(tmp_path: Path) -> None:
    worker = InProcessWorker(tmp_path)
    try:
        assert isinstance(await worker.receive(), Spare)
        await worker.send_frames(encode(Load(ModelOptions(backend="no-such-backend"))))
        dying = await worker.receive()
        assert isinstance(dying, Dying) and "no-such-backend" in dying.reason
        assert await worker.exit_code() == 1
    finally:
        worker.close()
