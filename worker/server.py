"""The worker's ZeroMQ loop: spare, LOAD, READY, serve and heartbeat, and how it ends.

Socket I/O stays on the event loop; the imports, the model load and inference run in
threads. File requests (`worker.engine.transcriber`) and live sessions
(`worker.engine.sessions`) take turns on the same inference lanes, which the server makes
once the model is loaded and hands to both. The socket is read in
every phase, so a SHUTDOWN (or SIGTERM) during a slow load ends the process at once:
the load thread is abandoned, and `__main__` exits with os._exit, which does not wait
for it. Otherwise stopping a loading worker would take the supervisor's SIGKILL phase.

How it ends, and what the supervisor hears:
- SHUTDOWN or SIGTERM, in any phase: a last heartbeat once a model is loaded (its work
  totals, for the metrics), nothing more (open live sessions end without their finals: the
  supervisor drains them first if it wants them); exit code 0.
- the model cannot be loaded: DYING with the reason; exit code 1.
- a fatal error (the receiver, the sender or the heartbeat task failing, or a request
  task escaping its own error handling): DYING with the reason, written straight to the
  socket because the sender may be what failed; exit code 1.

It heartbeats in every phase, a spare and a loading worker too, and answers LOAD with a
heartbeat at once, before the slow load: the supervisor kills a worker that falls silent,
so a frozen spare costs a request seconds instead of the whole `ready_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import zmq
import zmq.asyncio

from common.protocol import (
    WORKER_IDENTITY,
    Cancel,
    Dying,
    Error,
    ErrorCode,
    FromWorker,
    Heartbeat,
    Load,
    Message,
    Payload,
    ProtocolError,
    Ready,
    ReadyInfo,
    SessionAudio,
    SessionClose,
    SessionCommit,
    SessionOpen,
    Shutdown,
    Spare,
    Transcribe,
    decode,
    encode,
    kind_of,
)
from worker.backends import Backend, LoadError, create_backend, warm_up
from worker.engine import heap
from worker.engine.batcher import Batcher
from worker.engine.lanes import Lanes
from worker.engine.sessions import SessionTable
from worker.engine.tally import Tally
from worker.engine.transcriber import Transcriber
from worker.engine.vitals import Vitals

#: The longest the receiver keeps the event loop to itself while messages are waiting.
_RECEIVE_TURN_S = 0.25
log = logging.getLogger("worker")

T = TypeVar("T")

#: How long a closing socket may spend flushing a last DYING/RESULT to the supervisor.
_CLOSE_LINGER_MS = 500
#: How long a DYING written straight to the socket may wait for room in its queue.
_DYING_SEND_S = 1.0


class _Leave(Exception):
    """The phase in progress was interrupted: SHUTDOWN, SIGTERM or a fatal error."""


@dataclass(frozen=True)
class _Serving:
    """What a worker with its model loaded serves with: one set of lanes, both kinds of work on them."""

    lanes: Lanes
    transcriber: Transcriber
    sessions: SessionTable
    batcher: Batcher[Any, Any]  # the model's compute lanes: its time in the model and its batches


class WorkerServer:
    def __init__(self, backend_name: str, endpoint: str, heartbeat_interval: float, prewarm: bool = False) -> None:
        self._backend_name = backend_name
        self._prewarm = prewarm
        self._endpoint = endpoint
        self._heartbeat_interval = heartbeat_interval
        # One thread for the imports and the load. A SHUTDOWN abandons it mid-load.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")
        self._leave = asyncio.Event()  # SHUTDOWN, SIGTERM, or a fatal error (then _fatal says which)
        self._fatal: str | None = None
        self._load_requests: asyncio.Queue[Load] = asyncio.Queue(maxsize=1)
        self._load_chosen = False
        self._serving: _Serving | None = None  # once the model is loaded
        self._vitals = Vitals(cuda=False)  # replaced once the model's device is known
        self._tally = Tally()  # what it did, for the heartbeat: counters for the supervisor's metrics
        # Every outgoing message goes through one queue and one sender task: segments
        # posted from inference threads, results and heartbeats keep their order.
        self._outbox: asyncio.Queue[FromWorker] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        """Serve until told to stop or something fatal happens; the return value is the exit code."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._leave.set)
        ctx = zmq.asyncio.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, WORKER_IDENTITY)
        sock.setsockopt(zmq.LINGER, _CLOSE_LINGER_MS)
        sock.connect(self._endpoint)
        try:
            self._start(self._receive(sock), "receiver", forever=True)
            self._start(self._send(sock), "sender", forever=True)
            self._start(self._heartbeat(), "heartbeat", forever=True)
            try:
                await self._serve()
            except _Leave:
                pass
            except Exception as exc:  # the serve loop itself failed
                log.exception("worker failed")
                self._fail(f"{type(exc).__name__}: {exc}")
            await self._stop_tasks()
            if self._fatal is None:
                await self._say_goodbye(sock)
                return 0
            await self._say_dying(sock, self._fatal)
            return 1
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            sock.close(linger=_CLOSE_LINGER_MS)
            ctx.term()

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        # Phase 1, spare: import the ML libraries now, so that a later LOAD pays for the
        # model only. This is what makes a first request after an unload fast.
        await self._unless_leaving(loop.run_in_executor(self._pool, warm_up, self._backend_name, self._prewarm))
        self._post(Spare())
        load = await self._unless_leaving(self._load_requests.get())
        options = load.options
        # Phase 2: load the one model this process will ever hold.
        try:
            backend, info = await self._unless_leaving(loop.run_in_executor(self._pool, _load, load))
        except LoadError as exc:
            self._fail(str(exc))
            return
        except _Leave:
            raise
        except Exception as exc:  # an unexpected library failure is still a load failure
            log.exception("model load failed")
            self._fail(f"{type(exc).__name__}: {exc}")
            return
        # Phase 3: serve. The receiver task answers requests from here on. File requests and
        # live sessions decode on the same lanes: one pool of model copies, shared fairly.
        lanes = Lanes.for_model(info)
        sessions = SessionTable(
            backend, info, lanes, self._post, self._start, beam_size=options.beam_size, tally=self._tally
        )
        transcriber = Transcriber(backend, info, lanes, self._post, self._tally)
        self._serving = _Serving(lanes, transcriber, sessions, backend.batcher)
        self._vitals = Vitals(cuda=info.device == "cuda")
        self._post(Ready(info=info))
        # The other lanes' model copies, if any, each loaded on its own lane's thread.
        self._start(lanes.open_rest(backend.load_lane), "lanes")
        # What a long file's batch held goes back to the system once the lanes are quiet.
        self._start(heap.give_back_when_idle(lanes, self._vitals.rss_bytes, heap.libc_trim()), "heap")
        log.info("ready: load_s=%.2f device=%s", info.load_seconds, info.device)
        await self._leave.wait()

    async def _unless_leaving(self, work: Awaitable[T]) -> T:
        """`work`'s result, unless we are told to leave first (then _Leave)."""
        job = asyncio.ensure_future(work)
        leave = asyncio.ensure_future(self._leave.wait())
        try:
            await asyncio.wait({job, leave}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            leave.cancel()
        if not job.done():
            job.cancel()  # for a thread's work this only stops waiting: the thread is abandoned
            raise _Leave
        return job.result()

    # -- receiving ----------------------------------------------------------------

    async def _receive(self, sock: zmq.asyncio.Socket) -> None:
        turn_due = time.monotonic() + _RECEIVE_TURN_S
        while True:
            frames = await sock.recv_multipart(copy=False)
            try:
                message, payload = decode([frame.buffer for frame in frames])
            except ProtocolError as exc:
                self._refuse(exc)
                continue
            self._dispatch(message, payload)
            # A recv that finds a message waiting completes without giving the loop a turn: a
            # backlog of messages (a client flooding a live session) would starve the
            # heartbeat and the sender, and the supervisor would kill a busy worker as hung.
            # So the loop gets a turn at least every _RECEIVE_TURN_S; not after every message,
            # which let partial decodes start between the frames of a burst and made the
            # final after Wyoming's audio-stop wait for them (`python -m bench` times that wait).
            if (now := time.monotonic()) >= turn_due:
                await asyncio.sleep(0)
                turn_due = now + _RECEIVE_TURN_S

    def _dispatch(self, message: Message, payload: Payload | None) -> None:
        serving = self._serving
        match message:
            case Shutdown():
                if serving is not None:
                    serving.sessions.drop_all()  # no finals: the supervisor drained what it wanted
                self._leave.set()
            case Load():
                if self._load_chosen:
                    log.warning("ignoring a second LOAD: a worker loads one model in its life")
                else:
                    self._load_chosen = True
                    self._post(self._beat())  # "alive, loading": the supervisor waits seconds for this, not minutes
                    self._load_requests.put_nowait(message)
            case Transcribe(id=request_id):
                if serving is None:
                    self._post(Error(id=request_id, code=ErrorCode.INTERNAL, message="this worker has no model yet"))
                else:
                    assert payload is not None  # the codec guarantees a TRANSCRIBE its audio frame
                    self._start(self._answer(serving.transcriber, message, payload), f"request-{request_id}")
            case Cancel(id=request_id):
                if serving is not None:
                    serving.transcriber.cancel(request_id)
            case SessionOpen() | SessionAudio() | SessionCommit() | SessionClose():
                if serving is None:
                    self._post(Error(id=message.id, code=ErrorCode.INTERNAL, message="this worker has no model yet"))
                else:
                    serving.sessions.handle(message, payload)
            case _:
                log.warning("ignoring a %s message: that kind is for the supervisor", kind_of(message))

    def _refuse(self, exc: ProtocolError) -> None:
        """Answer what a malformed message was about, so nobody waits for a reply that never comes."""
        log.warning("malformed message: %s", exc)
        sessions = self._serving.sessions if self._serving is not None else None
        if exc.kind == "load" and not self._load_chosen:
            self._fail(f"the LOAD message could not be decoded: {exc}")  # DYING tells the supervisor why
        elif exc.request_id is not None and sessions is not None and sessions.is_open(exc.request_id):
            # An ERROR ends a session: the worker drops it too, so both sides agree it is over.
            sessions.fail(exc.request_id, ErrorCode.BAD_PARAMETER, f"a message could not be decoded: {exc}")
        elif exc.request_id is not None:
            self._post(
                Error(
                    id=exc.request_id, code=ErrorCode.BAD_PARAMETER, message=f"the request could not be decoded: {exc}"
                )
            )

    async def _answer(self, transcriber: Transcriber, request: Transcribe, data: Payload) -> None:
        self._post(await transcriber.answer(request, data))

    # -- sending ------------------------------------------------------------------

    def _post(self, message: FromWorker) -> None:
        self._outbox.put_nowait(message)

    async def _send(self, sock: zmq.asyncio.Socket) -> None:
        while True:
            message = await self._outbox.get()
            await sock.send_multipart(encode(message), copy=False)

    async def _heartbeat(self) -> None:
        """From the first moment to the last: a spare, a loading and a serving worker all beat."""
        while True:
            self._post(self._beat())
            await asyncio.sleep(self._heartbeat_interval)

    def _beat(self) -> Heartbeat:
        serving, vitals = self._serving, self._vitals
        if serving is None:  # a spare, or loading: alive, no model yet
            return Heartbeat(
                in_flight=0,
                served=0,
                lanes=0,
                lanes_busy=0,
                rss_bytes=vitals.rss_bytes(),
                vram_bytes=None,
                last_inference_at=None,
                time=time.time(),
            )
        transcriber, sessions = serving.transcriber, serving.sessions
        inferences = [t for t in (transcriber.last_inference_at, sessions.last_inference_at) if t is not None]
        return Heartbeat(
            in_flight=transcriber.in_flight,
            served=transcriber.served,
            lanes=serving.batcher.lanes,  # compute lanes open: fewer while copies still load
            lanes_busy=serving.lanes.busy,
            rss_bytes=vitals.rss_bytes(),
            vram_bytes=vitals.vram_bytes(),
            last_inference_at=max(inferences, default=None),
            time=time.time(),
            sessions=sessions.count,
            work=self._tally.totals(serving.batcher.work()),
        )

    async def _say_goodbye(self, sock: zmq.asyncio.Socket) -> None:
        """A last heartbeat on a clean exit: the work since the previous one (a request that
        ended just before an unload) is in the model's totals too. Best effort, like DYING."""
        if self._serving is None:
            return
        with contextlib.suppress(TimeoutError, zmq.ZMQError):
            await asyncio.wait_for(sock.send_multipart(encode(self._beat())), _DYING_SEND_S)

    async def _say_dying(self, sock: zmq.asyncio.Socket, reason: str) -> None:
        """Best effort: straight onto the socket, since the sender may be what failed."""
        log.error("exiting: %s", reason)
        try:
            await asyncio.wait_for(sock.send_multipart(encode(Dying(reason=reason))), _DYING_SEND_S)
        except (TimeoutError, zmq.ZMQError) as exc:
            log.warning("could not tell the supervisor: %s", exc)

    # -- tasks and failure --------------------------------------------------------

    def _start(self, coro: Coroutine[Any, Any, None], name: str, forever: bool = False) -> None:
        """Run `coro` as a task whose failure is fatal (and, if `forever`, so is its end)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(partial(self._task_done, forever=forever))

    def _task_done(self, task: asyncio.Task[None], forever: bool) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("the %s task failed", task.get_name(), exc_info=exc)
            self._fail(f"the worker's {task.get_name()} task failed: {type(exc).__name__}: {exc}")
        elif forever:
            self._fail(f"the worker's {task.get_name()} task stopped")

    def _fail(self, reason: str) -> None:
        if self._fatal is None:  # the first reason is the cause; later ones are its echoes
            self._fatal = reason
        self._leave.set()

    async def _stop_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


def _load(load: Load) -> tuple[Backend, ReadyInfo]:
    """Runs in the load thread."""
    log.info("loading a %s model from %s", load.options.backend, load.options.source)
    backend = create_backend(load.options)
    return backend, backend.load(load.room_mb)
