"""The supervisor's end of one worker's socket: messages out, replies routed to their waiters.

A `WorkerChannel` is one ZeroMQ ROUTER socket bound to a private `ipc://` path, and the
codec on both directions. It keeps the table of requests waiting for replies and of open
live sessions, and its read loop routes each reply: segments, results and errors to the
request they answer, session events, acks and ends to their `WorkerSession`. What is
about the process rather than a request (heartbeats, SPARE, READY, DYING) goes to the
process handle (`supervisor.workers.process`), which alone decides what it means.

Every message read is answered or accounted for: a reply that cannot be decoded still
fails the request or session it was about, and an unreadable SPARE, READY or DYING goes
to the process handle, which fails its start-up with it. When the process ends, `close()`
fails everyone still waiting with `WorkerCrashed`, then closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

import zmq
import zmq.asyncio

from common.protocol import (
    WORKER_IDENTITY,
    Cancel,
    Dying,
    Error,
    ErrorCode,
    Heartbeat,
    LiveParams,
    Message,
    Payload,
    ProtocolError,
    Ready,
    Result,
    Segment,
    SegmentDecoded,
    SessionAck,
    SessionEnded,
    SessionEvent,
    SessionOpen,
    Spare,
    ToWorker,
    Transcribe,
    TranscribeParams,
    TranscribeResult,
    decode,
    encode,
    kind_of,
)
from supervisor.workers.errors import WorkerCrashed, WorkerError, WorkerRequestError
from supervisor.workers.session import WorkerSession

log = logging.getLogger("asr.worker")

#: What the worker says about itself rather than about a request: the process handle's.
Control = Heartbeat | Spare | Ready | Dying

#: The kinds of `Control`, for a message of one that cannot be decoded.
CONTROL_KINDS = frozenset({"heartbeat", "spare", "ready", "dying"})

#: What a request's inbox receives from the worker: segments, then a result or an error.
_Reply = Segment | TranscribeResult | BaseException


class WorkerChannel:
    """One worker's socket, the requests and live sessions waiting on it, and its read loop."""

    def __init__(self, sock: zmq.asyncio.Socket, ipc_path: Path) -> None:
        self._sock = sock
        self._ipc_path = ipc_path
        self._pending: dict[str, asyncio.Queue[_Reply]] = {}
        self._sessions: dict[str, WorkerSession] = {}
        self._closed: str | None = None  # why, once the process has ended
        self._describe: Callable[[], str] = lambda: "spare"
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    def bind(cls, ctx: zmq.asyncio.Context, runtime_dir: Path) -> WorkerChannel:
        """A socket at a fresh path in `runtime_dir`, for one worker to connect to."""
        ipc_path = runtime_dir / f"w-{uuid.uuid4().hex[:12]}.sock"
        sock = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a worker not connected fails, not waits
        sock.bind(f"ipc://{ipc_path}")
        return cls(sock, ipc_path)

    @property
    def endpoint(self) -> str:
        return f"ipc://{self._ipc_path}"

    def start(
        self,
        describe: Callable[[], str],
        on_control: Callable[[Control], None],
        on_unreadable: Callable[[str, ProtocolError], None],
        on_broken: Callable[[BaseException | None], None],
    ) -> None:
        """Start reading. `describe` names the worker (its model) in messages and the log;
        `on_control` gets what the worker says about itself, `on_unreadable` the kind of a
        `Control` message that could not be decoded, with why, and `on_broken` the read loop's own failure, which
        would leave every waiter waiting: the process handle ends the process on it."""
        self._describe = describe
        self._reader = asyncio.create_task(self._read(on_control, on_unreadable), name=f"{self._ipc_path.stem}-read")

        def ended(task: asyncio.Task[None]) -> None:
            if not task.cancelled() and self._closed is None:
                on_broken(task.exception())

        self._reader.add_done_callback(ended)

    # -- requests ---------------------------------------------------------------

    async def stream(
        self, audio: bytes | Path, params: TranscribeParams, request_id: str | None = None
    ) -> AsyncGenerator[Segment | TranscribeResult, None]:
        """Segments as the worker decodes them (when `params.stream`), then the result.

        If the consumer stops early (its client went away), the worker is told to stop
        decoding, so an abandoned long file does not hold the model busy. `request_id` is the
        caller's (the service's), so both sides' log lines carry the same id.
        """
        self._check_open()
        request_id = request_id or uuid.uuid4().hex
        inbox: asyncio.Queue[_Reply] = asyncio.Queue()
        self._pending[request_id] = inbox
        finished = False
        try:
            if isinstance(audio, Path):  # a spooled upload (supervisor.uploads): the worker reads the file
                await self.send(Transcribe(id=request_id, params=params, audio_file=str(audio)), b"")
            else:
                await self.send(Transcribe(id=request_id, params=params), audio)
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
            if not finished and self._closed is None:
                with contextlib.suppress(WorkerCrashed):
                    await self.send(Cancel(id=request_id))

    async def open_session(self, params: LiveParams) -> WorkerSession:
        """Open a live session; see `WorkerSession`. The worker does not acknowledge the open:
        a refusal arrives as a `WorkerRequestError` from the session's iterator."""
        self._check_open()
        session = WorkerSession(
            uuid.uuid4().hex, self._send_for_session, self._forget_session, sample_rate=params.sample_rate
        )
        self._sessions[session.id] = session
        try:
            await self.send(SessionOpen(id=session.id, params=params))
        except BaseException:
            self._sessions.pop(session.id, None)
            raise
        return session

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    async def send(self, message: ToWorker, payload: Payload | None = None) -> None:
        try:
            await self._sock.send_multipart([WORKER_IDENTITY, *encode(message, payload)], copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the worker's socket is gone
            raise WorkerCrashed(f"worker for {self._describe()!r} is unreachable: {exc}") from None

    def _check_open(self) -> None:
        if self._closed is not None:
            raise WorkerCrashed(self._closed)

    async def _send_for_session(self, message: ToWorker, payload: Payload | None) -> None:
        self._check_open()
        await self.send(message, payload)

    def _forget_session(self, session: WorkerSession) -> None:
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    # -- the end ----------------------------------------------------------------

    def close(self, reason: str) -> None:
        """The process has ended (`reason` says how): fail everything waiting, free the socket."""
        self._closed = reason
        for inbox in self._pending.values():
            inbox.put_nowait(WorkerCrashed(reason))
        for session in self._sessions.values():
            session.end(WorkerCrashed(reason), gone=True)
        self._sessions.clear()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
        self._sock.close(linger=0)
        self._ipc_path.unlink(missing_ok=True)

    # -- reading ----------------------------------------------------------------

    async def _read(
        self, on_control: Callable[[Control], None], on_unreadable: Callable[[str, ProtocolError], None]
    ) -> None:
        while True:
            frames = await self._sock.recv_multipart(copy=False)
            try:
                message, _ = decode([frame.buffer for frame in frames[1:]])  # frames[0]: the identity
            except ProtocolError as exc:
                self._refuse(exc, on_unreadable)
                continue
            if isinstance(message, Control):
                on_control(message)
            else:
                self._route(message)

    def _route(self, message: Message) -> None:
        match message:
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
            case _:
                log.warning("model=%s ignoring a %s message from the worker", self._describe(), kind_of(message))

    def _refuse(self, exc: ProtocolError, on_unreadable: Callable[[str, ProtocolError], None]) -> None:
        """A reply we cannot read still ends what it was about: its request, session, or start-up."""
        log.warning("model=%s malformed message from worker: %s", self._describe(), exc)
        if exc.request_id is not None:
            error = WorkerRequestError(ErrorCode.INTERNAL, f"malformed reply from the worker: {exc}")
            if exc.request_id in self._sessions:
                self._end_session(exc.request_id, error, released=False)  # a lost event leaves a gap: end it
            else:
                self._deliver(exc.request_id, error)
        elif exc.kind is not None and exc.kind in CONTROL_KINDS:
            on_unreadable(exc.kind, exc)

    def _deliver(self, request_id: str, item: _Reply) -> None:
        inbox = self._pending.get(request_id)
        if inbox is not None:  # None: the caller gave up; nothing to do
            inbox.put_nowait(item)

    def _end_session(self, session_id: str, error: WorkerError | None = None, released: bool = True) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            if released:
                del self._sessions[session_id]
            session.end(error, released=released)
