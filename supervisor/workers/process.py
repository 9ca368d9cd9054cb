"""The supervisor's side of one worker process: spawn it, talk to it, end it.

A `WorkerProcess` is one OS process and one ZeroMQ ROUTER socket. It knows nothing
about TTLs or requests queued for a model (that is `lifecycle`'s job); it only turns
the socket into awaitable calls and the process's death into typed exceptions for
everyone waiting on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import zmq
import zmq.asyncio

from supervisor.config import ModelSpec
from worker.protocol import (
    WORKER_IDENTITY,
    ErrorCode,
    Kind,
    Message,
    ReadyInfo,
    Segment,
    TranscribeParams,
    TranscribeResult,
    load_message,
    transcribe_message,
)

log = logging.getLogger("asr.worker")


class WorkerError(Exception):
    """Base for everything a worker can fail with."""


class WorkerCrashed(WorkerError):
    """The process ended (crash, OOM kill, kill -9) while the caller waited on it."""


class WorkerLoadError(WorkerError):
    """The worker could not load its model; the message says why."""


class WorkerRequestError(WorkerError):
    """The worker refused one request; `code` says whether the input was at fault."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


#: What a request's queue receives from the worker: segments, then a result or an error.
_Reply = Segment | TranscribeResult | BaseException


@dataclass(frozen=True, slots=True)
class Timeouts:
    ready: float
    stop: float
    heartbeat_interval: float
    heartbeat: float


class WorkerProcess:
    """One worker process: first a spare (libraries imported), then, after `load()`, one model's."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        sock: zmq.asyncio.Socket,
        ipc_path: Path,
        timeouts: Timeouts,
        on_exit: Callable[[WorkerProcess], None],
    ) -> None:
        self.spec: ModelSpec | None = None  # set by load()
        self.pid = proc.pid
        self.info: ReadyInfo | None = None
        self.exit_code: int | None = None
        self.on_exit = on_exit  # whoever owns the process now: the spare pool, then a model's slot
        self._proc = proc
        self._sock = sock
        self._ipc_path = ipc_path
        self._timeouts = timeouts
        self._pending: dict[str, asyncio.Queue[_Reply]] = {}
        loop = asyncio.get_running_loop()
        self._spare: asyncio.Future[None] = loop.create_future()
        self._ready: asyncio.Future[ReadyInfo] = loop.create_future()
        self._exited = asyncio.Event()
        self._beat = asyncio.Event()
        self._death_reason: str | None = None
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"worker-{self.pid}-read"),
            asyncio.create_task(self._watch_exit(), name=f"worker-{self.pid}-exit"),
        ]

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else "spare"

    # -- starting ---------------------------------------------------------------

    @classmethod
    async def spawn(
        cls,
        backend: str,
        ctx: zmq.asyncio.Context,
        runtime_dir: Path,
        timeouts: Timeouts,
        on_exit: Callable[[WorkerProcess], None],
        prewarm: bool = False,
    ) -> WorkerProcess:
        """Start a spare: a process with `backend`'s libraries imported and no model yet
        (with `prewarm`, its one-time inference set-up paid too).

        Returns once it says SPARE; on any failure nothing is left running.
        """
        ipc_path = runtime_dir / f"w-{uuid.uuid4().hex[:12]}.sock"
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.bind(f"ipc://{ipc_path}")
        try:
            proc = await asyncio.create_subprocess_exec(
                *worker_command(backend, f"ipc://{ipc_path}", timeouts.heartbeat_interval, prewarm),
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # own process group: signals to us don't hit it by accident
            )
        except BaseException:
            sock.close(linger=0)
            ipc_path.unlink(missing_ok=True)
            raise
        worker = cls(proc, sock, ipc_path, timeouts, on_exit)
        try:
            await worker._await_phase(worker._spare, "start")
        except BaseException:
            await worker.stop()
            raise
        return worker

    async def load(self, spec: ModelSpec, on_exit: Callable[[WorkerProcess], None]) -> None:
        """Turn this spare into `spec`'s worker: LOAD, then wait for READY (or its reason not to)."""
        self.spec = spec
        self.on_exit = on_exit
        started = time.monotonic()
        try:
            await self._send(load_message(spec.options))
        except WorkerCrashed as exc:
            raise WorkerLoadError(str(exc)) from None
        self.info = await self._await_phase(self._ready, "load its model")
        self._tasks.append(asyncio.create_task(self._watch_heartbeat(), name=f"worker-{self.pid}-beat"))
        log.info(
            "worker ready model=%s pid=%d device=%s compute_type=%s load_s=%.2f",
            spec.name, self.pid, self.info.device, self.info.compute_type, time.monotonic() - started,
        )

    async def _await_phase(self, phase: asyncio.Future[Any], what: str) -> Any:
        try:
            return await asyncio.wait_for(asyncio.shield(phase), self._timeouts.ready)
        except TimeoutError:
            raise WorkerLoadError(
                f"worker for {self.name!r} did not {what} within {self._timeouts.ready:.0f}s "
                "(raise server.ready_timeout for very large models)"
            ) from None

    # -- requests ---------------------------------------------------------------

    async def transcribe(self, audio: bytes, params: TranscribeParams) -> TranscribeResult:
        async with contextlib.aclosing(self.stream(audio, params)) as items:
            async for item in items:
                if isinstance(item, TranscribeResult):
                    return item
        raise WorkerCrashed(self._crash_message())  # unreachable: stream() ends with a result or raises

    async def stream(self, audio: bytes, params: TranscribeParams) -> AsyncIterator[Segment | TranscribeResult]:
        """Segments as the worker decodes them (when `params.stream`), then the result.

        If the consumer stops early (its client went away), the worker is told to stop
        decoding, so an abandoned long file does not hold the model busy.
        """
        if self._exited.is_set():
            raise WorkerCrashed(self._crash_message())
        request_id = uuid.uuid4().hex
        inbox: asyncio.Queue[_Reply] = asyncio.Queue()
        self._pending[request_id] = inbox
        finished = False
        try:
            await self._send(transcribe_message(request_id, params, audio))
            while True:
                item = await inbox.get()
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                if isinstance(item, TranscribeResult):
                    finished = True
                    yield item
                    return
                yield item
        finally:
            self._pending.pop(request_id, None)
            if not finished and not self._exited.is_set():
                with contextlib.suppress(WorkerCrashed):
                    await self._send(Message(Kind.CANCEL, request_id))

    async def _send(self, msg: Message) -> None:
        try:
            await self._sock.send_multipart([WORKER_IDENTITY, *msg.to_frames()], copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the worker's socket is gone
            raise WorkerCrashed(f"worker for {self.name!r} is unreachable: {exc}") from None

    # -- stopping ---------------------------------------------------------------

    async def stop(self) -> str:
        """Polite SHUTDOWN, then SIGTERM, then SIGKILL, each with a deadline; always reaps.

        Returns how the process ended, for the log and the admin API.
        """
        if self._exited.is_set():
            return "already exited"
        with contextlib.suppress(WorkerCrashed):
            await self._send(Message(Kind.SHUTDOWN))
        if await self._wait_exit(self._timeouts.stop):
            return "shutdown"
        self._signal(signal.SIGTERM)
        if await self._wait_exit(self._timeouts.stop):
            return "sigterm"
        self._signal(signal.SIGKILL)
        await self._exited.wait()  # SIGKILL cannot be ignored; the watcher reaps it
        return "sigkill"

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def rss_bytes(self) -> int | None:
        """Resident memory of the worker process now (what unloading it gives back)."""
        with contextlib.suppress(psutil.Error):
            return psutil.Process(self.pid).memory_info().rss
        return None

    @property
    def is_alive(self) -> bool:
        return not self._exited.is_set()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)  # the whole group: nothing the worker started survives

    async def _wait_exit(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._exited.wait(), timeout)
            return True
        except TimeoutError:
            return False

    # -- background tasks -------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            frames = await self._sock.recv_multipart(copy=False)
            try:
                msg = Message.from_frames(frames[1:])
            except ValueError as exc:
                log.warning("model=%s malformed message from worker: %s", self.name, exc)
                continue
            self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        if msg.kind is Kind.HEARTBEAT:
            self._beat.set()
        elif msg.kind is Kind.SEGMENT:
            self._deliver(msg.id, Segment.from_dict(msg.body["segment"]))
        elif msg.kind is Kind.RESULT:
            self._deliver(msg.id, TranscribeResult.from_dict(msg.body["result"]))
        elif msg.kind is Kind.ERROR:
            code = ErrorCode(msg.body.get("code", ErrorCode.INTERNAL))
            self._deliver(msg.id, WorkerRequestError(code, msg.body.get("message", "worker error")))
        elif msg.kind is Kind.SPARE and not self._spare.done():
            self._spare.set_result(None)
        elif msg.kind is Kind.READY and not self._ready.done():
            self._ready.set_result(ReadyInfo(**msg.body["info"]))
        elif msg.kind is Kind.DYING:
            self._death_reason = str(msg.body.get("message", "worker is exiting"))
            for phase in (self._spare, self._ready):
                if not phase.done():
                    phase.set_exception(WorkerLoadError(self._death_reason))

    def _deliver(self, request_id: str, item: _Reply) -> None:
        inbox = self._pending.get(request_id)
        if inbox is not None:  # None: the caller gave up; nothing to do
            inbox.put_nowait(item)

    async def _watch_exit(self) -> None:
        self.exit_code = await self._proc.wait()
        self._exited.set()
        error_message = self._crash_message()
        for phase in (self._spare, self._ready):
            if not phase.done():
                phase.set_exception(WorkerLoadError(self._death_reason or error_message))
                phase.exception()  # retrieved: nobody may be waiting on this phase
        for inbox in self._pending.values():
            inbox.put_nowait(WorkerCrashed(error_message))
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._sock.close(linger=0)
        self._ipc_path.unlink(missing_ok=True)
        self.on_exit(self)

    async def _watch_heartbeat(self) -> None:
        """A worker that stops heart-beating is hung (or frozen): kill it so it is replaced."""
        while True:
            try:
                await asyncio.wait_for(self._beat.wait(), self._timeouts.heartbeat)
            except TimeoutError:
                log.error("model=%s pid=%d no heartbeat for %.0fs: killing it", self.name, self.pid,
                          self._timeouts.heartbeat)
                self._death_reason = f"worker sent no heartbeat for {self._timeouts.heartbeat:.0f}s and was killed"
                self.kill()
                return
            self._beat.clear()

    def _crash_message(self) -> str:
        code = self.exit_code
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"
        reason = f": {self._death_reason}" if self._death_reason else ""
        return f"worker for model {self.name!r} (pid {self.pid}) {how}{reason}"


def worker_command(backend: str, endpoint: str, heartbeat_interval: float, prewarm: bool = False) -> list[str]:
    return [*_base_command(backend, endpoint, heartbeat_interval), *(["--prewarm"] if prewarm else [])]


def _base_command(backend: str, endpoint: str, heartbeat_interval: float) -> list[str]:
    return [
        sys.executable, "-m", "worker",
        "--endpoint", endpoint,
        "--parent-pid", str(os.getpid()),
        "--backend", backend,
        "--heartbeat-interval", str(heartbeat_interval),
        "--log-level", logging.getLevelName(logging.getLogger("asr").getEffectiveLevel()),
    ]

