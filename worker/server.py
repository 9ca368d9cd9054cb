"""The worker's ZeroMQ loop: load the model, say READY, serve requests, heartbeat.

Socket I/O stays on the event loop; decoding and inference run in a thread pool, so
heartbeats keep flowing while a long file is transcribed (CTranslate2 releases the GIL).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import msgspec
import zmq
import zmq.asyncio

from worker.audio import decode as audio
from worker.engine.lanes import Lanes
from worker.backends import Backend, LoadError, OnSegment, create_backend, warm_up
from worker.protocol import (
    WORKER_IDENTITY,
    ErrorCode,
    Kind,
    Message,
    ModelOptions,
    ReadyInfo,
    Segment,
    TranscribeParams,
    TranscribeResult,
    dying_message,
    error_message,
    ready_message,
    result_message,
    segment_message,
)

log = logging.getLogger("worker")

#: How long a closing socket may spend flushing a last DYING/RESULT to the supervisor.
_CLOSE_LINGER_MS = 500


class RequestError(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class WorkerServer:
    def __init__(self, backend_name: str, endpoint: str, heartbeat_interval: float, prewarm: bool = False) -> None:
        self._backend_name = backend_name
        self._prewarm = prewarm
        self._backend: Backend | None = None
        self._endpoint = endpoint
        self._heartbeat_interval = heartbeat_interval
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")
        self._info: ReadyInfo | None = None
        self._in_flight = 0
        self._served = 0
        self._stop = asyncio.Event()
        # Every outgoing message goes through one queue and one sender task: segments
        # posted from inference threads, results and heartbeats keep their order.
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._cancelled: set[str] = set()

    async def run(self) -> int:
        """Serve until SHUTDOWN or SIGTERM; the return value is the process exit code."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, WORKER_IDENTITY)
        sock.setsockopt(zmq.LINGER, _CLOSE_LINGER_MS)
        sock.connect(self._endpoint)
        try:
            return await self._serve(sock)
        finally:
            sock.close(linger=_CLOSE_LINGER_MS)
            ctx.term()

    async def _serve(self, sock: zmq.asyncio.Socket) -> int:
        # Phase 1, spare: import the ML libraries now, so that a later LOAD pays for the
        # model only. This is what makes a first request after an unload fast.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, warm_up, self._backend_name, self._prewarm)
        await sock.send_multipart(Message(Kind.SPARE).to_frames())
        options = await self._wait_for_load(sock)
        if options is None:
            return 0  # told to stop while still a spare
        # Phase 2: load the one model this process will ever hold.
        try:
            self._info = await loop.run_in_executor(self._pool, self._load, options)
        except LoadError as exc:
            await sock.send_multipart(dying_message(str(exc)).to_frames())
            return 1
        except Exception as exc:  # an unexpected library failure is still a load failure
            log.exception("model load failed")
            await sock.send_multipart(dying_message(f"{type(exc).__name__}: {exc}").to_frames())
            return 1
        self._lanes = Lanes(max(1, self._info.concurrency))
        await sock.send_multipart(ready_message(self._info).to_frames())
        log.info("ready: load_s=%.2f device=%s", self._info.load_seconds, self._info.device)

        tasks: set[asyncio.Task[None]] = set()
        sender = asyncio.create_task(self._send_loop(sock))
        heartbeat = asyncio.create_task(self._heartbeat())
        stop_wait = asyncio.create_task(self._stop.wait())
        try:
            while not self._stop.is_set():
                recv = asyncio.ensure_future(sock.recv_multipart(copy=False))
                done, _ = await asyncio.wait({recv, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if recv not in done:
                    recv.cancel()
                    break
                try:
                    msg = Message.from_frames(recv.result())
                except ValueError as exc:
                    log.warning("dropping malformed message: %s", exc)
                    continue
                if msg.kind is Kind.SHUTDOWN:
                    break
                if msg.kind is Kind.CANCEL:
                    self._cancelled.add(msg.id)
                elif msg.kind is Kind.TRANSCRIBE:
                    task = asyncio.create_task(self._handle(msg))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        finally:
            heartbeat.cancel()
            stop_wait.cancel()
            sender.cancel()
        return 0

    async def _send_loop(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            msg = await self._outbox.get()
            await sock.send_multipart(msg.to_frames(), copy=False)

    async def _wait_for_load(self, sock: zmq.asyncio.Socket) -> ModelOptions | None:
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                recv = asyncio.ensure_future(sock.recv_multipart())
                done, _ = await asyncio.wait({recv, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if recv not in done:
                    recv.cancel()
                    return None
                try:
                    msg = Message.from_frames(recv.result())
                except ValueError:
                    continue
                if msg.kind is Kind.SHUTDOWN:
                    return None
                if msg.kind is Kind.LOAD:
                    return msgspec.convert(msg.body["options"], ModelOptions)
        finally:
            stop_wait.cancel()

    def _load(self, options: ModelOptions) -> ReadyInfo:
        log.info("loading a %s model from %s", options.backend, options.source)
        self._backend = create_backend(options)
        return self._backend.load()

    async def _heartbeat(self) -> None:
        while True:
            body = {"in_flight": self._in_flight, "served": self._served, "time": time.time()}
            self._outbox.put_nowait(Message(Kind.HEARTBEAT, "", body))
            await asyncio.sleep(self._heartbeat_interval)

    async def _handle(self, msg: Message) -> None:
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        try:
            params = TranscribeParams(**msg.body.get("params", {}))

            def on_segment(segment: Segment) -> bool:  # runs in the inference thread
                if params.stream:
                    loop.call_soon_threadsafe(self._outbox.put_nowait, segment_message(msg.id, segment))
                return msg.id not in self._cancelled

            result = await self._lanes.run(self._transcribe, msg.payload or b"", params, on_segment)
            reply = result_message(msg.id, result)
        except RequestError as exc:
            reply = error_message(msg.id, exc.code, str(exc))
        except TypeError as exc:
            reply = error_message(msg.id, ErrorCode.BAD_PARAMETER, f"bad parameters: {exc}")
        except Exception as exc:
            log.exception("transcription failed")
            reply = error_message(msg.id, ErrorCode.INTERNAL, f"transcription failed: {type(exc).__name__}: {exc}")
        finally:
            self._in_flight -= 1
            self._served += 1
            self._cancelled.discard(msg.id)
        self._outbox.put_nowait(reply)

    def _transcribe(self, data: bytes | memoryview, params: TranscribeParams, on_segment: OnSegment,
                    lane: int) -> TranscribeResult:
        assert self._info is not None and self._backend is not None
        if params.task == "translate" and not self._info.multilingual:
            raise RequestError(
                ErrorCode.BAD_PARAMETER,
                "this model is English-only and cannot translate; use a multilingual model",
            )
        if params.language and self._info.languages and params.language not in self._info.languages:
            raise RequestError(
                ErrorCode.BAD_PARAMETER,
                f"language {params.language!r} is not supported by this model; "
                f"supported: {', '.join(self._info.languages)}",
            )
        try:
            samples = audio.decode(data, params)
        except audio.AudioError as exc:
            raise RequestError(ErrorCode.BAD_AUDIO, str(exc)) from exc
        return self._backend.transcribe(samples, params, on_segment, lane)
