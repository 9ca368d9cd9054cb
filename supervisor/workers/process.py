"""The supervisor's side of one worker process: spawn it, talk to it, end it.

A `WorkerProcess` is one OS process and one ZeroMQ ROUTER socket. It knows nothing
about TTLs or requests queued for a model (that is the model owner's job); it only turns
the socket into awaitable calls and the process's death into typed exceptions for
everyone waiting on it. Every message it reads is answered or accounted for: a reply
that cannot be decoded still fails the request (or the start-up phase, or the live
session) it was about. Live sessions are `WorkerSession`s (`supervisor.workers.session`).

It is watched from its first moment: a worker heartbeats in every phase (a spare, a
loading worker, a serving one), and one silent for `heartbeat_timeout` is killed. LOAD is
answered at once with a heartbeat, so a spare that froze after it was pooled is found out
within `Timeouts.answer` seconds, not after `ready_timeout`; that failure is a
`WorkerLost`, the process's, which the registry does not count against the model.
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
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import zmq
import zmq.asyncio

from common import logs
from common.protocol import (
    WORKER_IDENTITY,
    Cancel,
    Dying,
    Error,
    ErrorCode,
    Heartbeat,
    LiveParams,
    Load,
    Message,
    Payload,
    ProtocolError,
    Ready,
    ReadyInfo,
    Result,
    Segment,
    SegmentDecoded,
    SessionAck,
    SessionEnded,
    SessionEvent,
    SessionOpen,
    Shutdown,
    Spare,
    ToWorker,
    Transcribe,
    TranscribeParams,
    TranscribeResult,
    decode,
    encode,
    kind_of,
)
from supervisor.config import ModelSpec
from supervisor.workers.session import WorkerSession

log = logging.getLogger("asr.worker")


class WorkerError(Exception):
    """Base for everything a worker can fail with."""


class WorkerCrashed(WorkerError):
    """The process ended (crash, OOM kill, kill -9) while the caller waited on it."""


class WorkerLoadError(WorkerError):
    """The worker could not load its model; the message says why."""


class WorkerLost(WorkerLoadError):
    """The process went silent or died during start-up without saying why (frozen, killed).

    The worker reports a model it cannot load itself (DYING, a plain `WorkerLoadError`), so
    this is the process's failure first: a spare that fails this way is replaced by a fresh
    process before anyone blames the model.
    """


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

    @property
    def answer(self) -> float:
        """How long a live worker may take to answer what its event loop answers at once (LOAD).

        Five heartbeat intervals, at least 2 s (a busy machine), at most `heartbeat` (past
        that, it is hung by definition): 5 s with the defaults.
        """
        return min(self.heartbeat, max(2.0, 5 * self.heartbeat_interval))


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
        self._sessions: dict[str, WorkerSession] = {}
        loop = asyncio.get_running_loop()
        self._spare: asyncio.Future[None] = loop.create_future()
        self._ready: asyncio.Future[ReadyInfo] = loop.create_future()
        self._exited = asyncio.Event()
        self._beat = asyncio.Event()
        self._last_beat_at = time.monotonic()  # its start counts as a sign of life
        self._last_heartbeat: Heartbeat | None = None
        self._model_ready = False  # heartbeats before READY are liveness only, not a model's report
        # LOAD's answer: a heartbeat sent (worker's wall clock) no earlier than LOAD was.
        self._answer_after = float("inf")
        self._answered: asyncio.Future[None] = loop.create_future()
        self._death_reason: str | None = None
        self.hung = False  # killed by the supervisor for falling silent
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"worker-{self.pid}-read"),
            asyncio.create_task(self._watch_exit(), name=f"worker-{self.pid}-exit"),
            asyncio.create_task(self._watch_heartbeat(), name=f"worker-{self.pid}-beat"),
        ]
        self._tasks[0].add_done_callback(self._read_loop_ended)

    @property
    def name(self) -> str:
        return self.spec.name if self.spec else "spare"

    @property
    def last_heartbeat(self) -> Heartbeat | None:
        """The worker's latest report on itself (load, memory, last inference); None before READY."""
        return self._last_heartbeat

    @property
    def death_reason(self) -> str | None:
        """Why it ended, when someone said: its DYING, or the supervisor that killed it (silence)."""
        return self._death_reason

    @property
    def silent_for(self) -> float:
        """Seconds since the worker's last heartbeat (or its start)."""
        return time.monotonic() - self._last_beat_at

    @property
    def seems_frozen(self) -> bool:
        """Silent for longer than a live worker ever is: not worth sending LOAD to."""
        return self.silent_for > self._timeouts.answer

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

    async def load(
        self, spec: ModelSpec, on_exit: Callable[[WorkerProcess], None], room_mb: float | None = None
    ) -> None:
        """Turn this spare into `spec`'s worker: LOAD, then wait for READY (or its reason not to).

        `room_mb`: what memory_budget_mb leaves this worker, for its choice of model copies.

        Raises `WorkerLost` if the process does not answer LOAD within `Timeouts.answer`
        (it is killed) or dies without a reason; `WorkerLoadError` if it says why it failed.
        """
        self.spec = spec
        self.on_exit = on_exit
        started = time.monotonic()
        self._answer_after = time.time()
        try:
            await self._send(Load(spec.options, room_mb=room_mb))
        except WorkerCrashed as exc:
            raise WorkerLost(str(exc)) from None
        try:
            await asyncio.wait_for(asyncio.shield(self._answered), self._timeouts.answer)
        except TimeoutError:
            self._death_reason = f"worker did not answer LOAD within {self._timeouts.answer:.0f}s and was killed"
            log.warning("model=%s pid=%d %s", spec.name, self.pid, self._death_reason)
            self.kill()
            raise WorkerLost(f"worker for model {spec.name!r} (pid {self.pid}): {self._death_reason}") from None
        self.info = await self._await_phase(self._ready, "load its model")
        log.info(
            "worker ready model=%s pid=%d device=%s compute_type=%s load_s=%.2f lanes=%d copies=%d (%s)",
            spec.name,
            self.pid,
            self.info.device,
            self.info.compute_type,
            time.monotonic() - started,
            self.info.concurrency,
            self.info.copies,
            self.info.lanes_reason,
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

    async def transcribe(self, audio: bytes | Path, params: TranscribeParams) -> TranscribeResult:
        async with contextlib.aclosing(self.stream(audio, params)) as items:
            async for item in items:
                if isinstance(item, TranscribeResult):
                    return item
        raise WorkerCrashed(self._crash_message())  # unreachable: stream() ends with a result or raises

    async def stream(
        self, audio: bytes | Path, params: TranscribeParams, request_id: str | None = None
    ) -> AsyncGenerator[Segment | TranscribeResult, None]:
        """Segments as the worker decodes them (when `params.stream`), then the result.

        If the consumer stops early (its client went away), the worker is told to stop
        decoding, so an abandoned long file does not hold the model busy. `request_id` is the
        caller's (the service's), so both sides' log lines carry the same id.
        """
        if self._exited.is_set():
            raise WorkerCrashed(self._crash_message())
        request_id = request_id or uuid.uuid4().hex
        inbox: asyncio.Queue[_Reply] = asyncio.Queue()
        self._pending[request_id] = inbox
        finished = False
        try:
            if isinstance(audio, Path):  # a spooled upload (supervisor.uploads): the worker reads the file
                await self._send(Transcribe(id=request_id, params=params, audio_file=str(audio)), b"")
            else:
                await self._send(Transcribe(id=request_id, params=params), audio)
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
                    await self._send(Cancel(id=request_id))

    # -- live sessions ----------------------------------------------------------

    async def open_session(self, params: LiveParams) -> WorkerSession:
        """Open a live session on this worker; see `WorkerSession` for how to use it.

        The worker does not acknowledge the open: a refusal (a language the model does not
        know, say) arrives as a `WorkerRequestError` from the session's iterator. Raises
        WorkerCrashed at once if the worker is gone.
        """
        if self._exited.is_set():
            raise WorkerCrashed(self._crash_message())
        session = WorkerSession(
            uuid.uuid4().hex, self._send_for_session, self._forget_session, sample_rate=params.sample_rate
        )
        self._sessions[session.id] = session
        try:
            await self._send(SessionOpen(id=session.id, params=params))
        except BaseException:
            self._sessions.pop(session.id, None)
            raise
        return session

    @property
    def sessions(self) -> int:
        """Live sessions open on this worker (as far as the supervisor knows)."""
        return len(self._sessions)

    async def _send_for_session(self, message: ToWorker, payload: Payload | None) -> None:
        if self._exited.is_set():
            raise WorkerCrashed(self._crash_message())
        await self._send(message, payload)

    def _forget_session(self, session: WorkerSession) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    def _end_session(self, session_id: str, error: WorkerError | None = None, released: bool = True) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            if released:
                del self._sessions[session_id]
            session.end(error, released=released)

    async def _send(self, message: ToWorker, payload: Payload | None = None) -> None:
        try:
            await self._sock.send_multipart([WORKER_IDENTITY, *encode(message, payload)], copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the worker's socket is gone
            raise WorkerCrashed(f"worker for {self.name!r} is unreachable: {exc}") from None

    # -- stopping ---------------------------------------------------------------

    async def stop(self) -> str:
        """Polite SHUTDOWN, then SIGTERM, then SIGKILL, each with a deadline; always reaps.

        A spare has nothing to finish, so its phases wait `Timeouts.answer` only: a frozen one
        does not hold up a shutdown. SIGTERM comes with SIGCONT, so a stopped (SIGSTOP)
        process wakes to obey it. Returns how the process ended, for the log and the admin API.
        """
        if self._exited.is_set():
            return "already exited"
        patience = self._timeouts.stop if self.spec is not None else min(self._timeouts.stop, self._timeouts.answer)
        with contextlib.suppress(WorkerCrashed):
            await self._send(Shutdown())
        if await self._wait_exit(patience):
            return "shutdown"
        self._signal(signal.SIGTERM)
        self._signal(signal.SIGCONT)
        if await self._wait_exit(patience):
            return "sigterm"
        self._signal(signal.SIGKILL)
        await self._exited.wait()  # SIGKILL cannot be ignored; the watcher reaps it
        return "sigkill"

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def rss_bytes(self) -> int | None:
        """Resident memory of the worker process now (what unloading it gives back)."""
        with contextlib.suppress(psutil.Error):
            return int(psutil.Process(self.pid).memory_info().rss)
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
                message, _ = decode([frame.buffer for frame in frames[1:]])  # frames[0]: the identity
            except ProtocolError as exc:
                self._refuse(exc)
                continue
            self._dispatch(message)

    def _read_loop_ended(self, task: asyncio.Task[None]) -> None:
        """A read loop that died would leave every caller waiting: end the worker instead."""
        if task.cancelled() or self._exited.is_set():
            return
        log.error(
            "model=%s pid=%d reading from the worker failed: killing it", self.name, self.pid, exc_info=task.exception()
        )
        self._death_reason = f"the supervisor could not read from the worker: {task.exception()!r}"
        self.kill()

    def _dispatch(self, message: Message) -> None:
        match message:
            case Heartbeat():
                self._alive()
                if self._model_ready:
                    self._last_heartbeat = message
                if message.time >= self._answer_after and not self._answered.done():
                    self._answered.set_result(None)
            case SegmentDecoded(id=request_id, segment=segment):
                self._deliver(request_id, segment)
            case Result(id=request_id, result=result):
                self._deliver(request_id, result)
            case SessionEvent(id=session_id, event=event):
                if (session := self._sessions.get(session_id)) is not None:
                    session.deliver(event)
            case SessionEnded(id=session_id):
                self._end_session(session_id)
            case SessionAck(id=session_id, seq=seq):
                if (session := self._sessions.get(session_id)) is not None:
                    session.acknowledged(seq)
            case Error(id=request_id, code=code, message=text) if request_id in self._sessions:
                self._end_session(request_id, WorkerRequestError(code, text))
            case Error(id=request_id, code=code, message=text):
                self._deliver(request_id, WorkerRequestError(code, text))
            case Spare():
                if not self._spare.done():
                    self._spare.set_result(None)
            case Ready(info=info):
                self._model_ready = True
                if not self._ready.done():
                    self._ready.set_result(info)
            case Dying(reason=reason):
                self._death_reason = reason
                self._fail_phases(WorkerLoadError(reason))
            case _:
                log.warning("model=%s ignoring a %s message from the worker", self.name, kind_of(message))

    def _refuse(self, exc: ProtocolError) -> None:
        """A reply we cannot read still ends what it was about: its request, or the start-up phase."""
        log.warning("model=%s malformed message from worker: %s", self.name, exc)
        if exc.request_id is not None:
            error = WorkerRequestError(ErrorCode.INTERNAL, f"malformed reply from the worker: {exc}")
            if exc.request_id in self._sessions:
                self._end_session(exc.request_id, error, released=False)  # a lost event leaves a gap: end it
            else:
                self._deliver(exc.request_id, error)
        elif exc.kind in ("spare", "ready", "dying"):
            self._fail_phases(WorkerLoadError(f"malformed {exc.kind.upper()} from the worker: {exc}"))
        elif exc.kind == "heartbeat":
            self._alive()  # its stats are unreadable, but it is a sign of life all the same

    def _alive(self) -> None:
        self._last_beat_at = time.monotonic()
        self._beat.set()

    def _fail_phases(self, error: WorkerLoadError) -> None:
        """Fail start-up phases still open; a caller awaiting one gets `error`."""
        for phase in (self._spare, self._answered, self._ready):
            if not phase.done():
                phase.set_exception(error)
                phase.exception()  # retrieved: nobody may be waiting on this phase

    def _deliver(self, request_id: str, item: _Reply) -> None:
        inbox = self._pending.get(request_id)
        if inbox is not None:  # None: the caller gave up; nothing to do
            inbox.put_nowait(item)

    async def _watch_exit(self) -> None:
        self.exit_code = await self._proc.wait()
        self._exited.set()
        error_message = self._crash_message()
        # A DYING has already failed the phases with the worker's own reason. A signal
        # (ours for silence, the kernel's OOM killer, anyone's kill -9) is the process's
        # failure; an exit of its own, the worker's (its DYING may be unread yet).
        signalled = self.exit_code is not None and self.exit_code < 0
        self._fail_phases(WorkerLost(error_message) if signalled else WorkerLoadError(error_message))
        for inbox in self._pending.values():
            inbox.put_nowait(WorkerCrashed(error_message))
        for session in self._sessions.values():
            session.end(WorkerCrashed(error_message), gone=True)
        self._sessions.clear()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._sock.close(linger=0)
        self._ipc_path.unlink(missing_ok=True)
        self.on_exit(self)

    async def _watch_heartbeat(self) -> None:
        """A worker that stops heart-beating is hung (or frozen): kill it so it is replaced.

        From spawn to exit: a frozen spare is replaced by its pool, a frozen load fails in
        `heartbeat_timeout` instead of `ready_timeout`."""
        while True:
            try:
                await asyncio.wait_for(self._beat.wait(), self._timeouts.heartbeat)
            except TimeoutError:
                log.error(
                    "model=%s pid=%d no heartbeat for %.0fs: killing it", self.name, self.pid, self._timeouts.heartbeat
                )
                self._death_reason = f"worker sent no heartbeat for {self._timeouts.heartbeat:.0f}s and was killed"
                self.hung = True
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
        sys.executable,
        "-m",
        "worker",
        "--endpoint",
        endpoint,
        "--parent-pid",
        str(os.getpid()),
        "--backend",
        backend,
        "--heartbeat-interval",
        str(heartbeat_interval),
        "--log-level",
        logging.getLevelName(logging.getLogger("asr").getEffectiveLevel()),
        "--log-format",
        logs.current_format(),
    ]
