"""One owner task per model: the only code that starts, stops or counts a model's worker.

Callers never look at the state and then act on it (a TTL firing between the look
and the act is exactly the race that leaves requests on a dying process). They send
a command to the owner's inbox and await its reply:

    async with slot.lease() as worker:      # Acquire → the owner starts a worker if needed
        await worker.transcribe(...)        # Release on exit → the owner restarts the TTL clock

The idle TTL is the timeout on that inbox read, armed only while the worker is ready
and nothing is in flight or queued, so it cannot fire under a request. The state × event
table lives in `states.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from supervisor.workers import devices
from supervisor.models.capacity import CapacityFull, Gate, OpenGate
from supervisor.config import ModelSpec
from supervisor.models.commands import Acquire, Close, Command, Exited, Load, Release, Unload
from supervisor.models.states import State, backoff_seconds, check_transition
from supervisor.workers.process import WorkerError, WorkerProcess

log = logging.getLogger("asr.lifecycle")

#: Starts a worker for a spec and returns it READY; calls the callback when it exits.
Launcher = Callable[[ModelSpec, Callable[[WorkerProcess], None]], Awaitable[WorkerProcess]]


class ModelUnavailable(Exception):
    """The model cannot serve right now (load failed, backing off, shutting down)."""

    def __init__(self, message: str, retry_after: float | None = None, code: str = "model_unavailable") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code


@dataclass(slots=True)
class _Stats:
    """What the owner knows, copied out for /health; advisory the moment it is read."""

    requests: int = 0
    load_seconds: float | None = None
    languages: list[str] | None = None  # from the last READY: known once loaded
    last_used: float | None = None  # time.time() of the last request's end
    last_error: str | None = None
    unloads: dict[str, int] = field(default_factory=dict)


class ModelSlot:
    def __init__(
        self,
        spec: ModelSpec,
        launch: Launcher,
        clock: Callable[[], float] = time.monotonic,
        gate: Gate | None = None,
        memory_estimate_mb: float = 0.0,
    ) -> None:
        self.spec = spec
        self._launch = launch
        self._clock = clock
        self._gate: Gate = gate or OpenGate()
        self._memory_estimate_mb = memory_estimate_mb
        self._measured_mb = 0.0  # the largest RSS its worker has been seen at
        self._inbox: asyncio.Queue[Command] = asyncio.Queue()
        self._state = State.UNLOADED
        self._ttl = spec.ttl
        self._worker: WorkerProcess | None = None
        self._generation = 0
        self._in_flight = 0
        self._idle_since = clock()
        self._failures = 0
        self._retry_at = 0.0
        self._draining: list[asyncio.Future[str]] = []  # unload callers waiting for in-flight work
        self._deferred: deque[Acquire] = deque()  # requests that arrived while draining
        self._drain_reason = "unload"
        self._stats = _Stats()
        self._task: asyncio.Task[None] | None = None

    # -- the public API: send a command, await the reply ------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"slot-{self.spec.name}")

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[WorkerProcess]:
        """A ready worker, held busy (never stopped by the TTL) until the block exits."""
        reply = self._send(Acquire)
        try:
            worker, generation = await reply
        except asyncio.CancelledError:
            # Cancelled just after the owner granted the lease: hand it back, or the
            # model would count a request in flight forever and never unload.
            if reply.done() and not reply.cancelled() and reply.exception() is None:
                self._inbox.put_nowait(Release(reply.result()[1]))
            raise
        try:
            yield worker
        finally:
            self._inbox.put_nowait(Release(generation))

    async def load(self, ttl: int | None = None) -> None:
        """Start the worker now (if needed); `ttl` replaces the model's TTL from now on."""
        await self._send(Load, ttl=ttl)

    async def unload(self, reason: str = "unload") -> dict[str, Any]:
        """Stop the worker once its in-flight requests are done; says how it ended and what it freed."""
        worker = self._worker
        rss = worker.rss_bytes() if worker else None
        how = await self._send(Unload, reason=reason)
        return {"model": self.spec.name, "pid": worker.pid if worker else None, "ended_by": how,
                "freed_rss_mb": _mb(rss) if how != "not loaded" else 0.0}

    async def close(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._ask(Close)
        await self._task

    # -- advisory reads for the capacity gate (it acts only through unload()) ------

    def is_idle(self) -> bool:
        return (self._state is State.READY and not self._in_flight and not self._draining
                and self._inbox.empty() and not self._deferred)

    def last_used_monotonic(self) -> float:
        return self._idle_since

    def memory_estimate_mb(self) -> float:
        return self._measured_mb or self._memory_estimate_mb

    def snapshot(self) -> dict[str, Any]:
        worker = self._worker
        info = worker.info if worker else None
        return {
            "state": self._state.value,
            "backend": self.spec.backend,
            "source": self.spec.source,
            "description": self.spec.description,
            "pid": worker.pid if worker else None,
            "device": info.device if info else None,
            "compute_type": info.compute_type if info else None,
            "concurrency": info.concurrency if info else None,
            "rss_mb": _mb(worker.rss_bytes()) if worker else None,
            "languages": self._stats.languages,
            "ttl": self._ttl,
            "ttl_remaining": self._ttl_remaining(),
            "in_flight": self._in_flight,
            "queued": self._inbox.qsize() + len(self._deferred),
            "requests": self._stats.requests,
            "load_seconds": self._stats.load_seconds,
            "last_used": self._stats.last_used,
            "last_error": self._stats.last_error,
            "unloads": dict(self._stats.unloads),  # by reason: ttl, unload, evicted, crash, shutdown
            "retry_in": round(max(0.0, self._retry_at - self._clock()), 1) if self._state is State.FAILED else None,
        }

    async def _ask(self, command_type: type) -> Any:
        return await self._send(command_type)

    def _send(self, command_type: type, **fields: Any) -> asyncio.Future[Any]:
        if self._task is None or self._task.done():
            raise ModelUnavailable(f"model {self.spec.name!r} is shut down")
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(command_type(reply, **fields))
        return reply

    # -- the owner task ---------------------------------------------------------

    async def _run(self) -> None:
        while True:
            command = await self._next_command()
            if command is None:
                await self._stop_worker("ttl")
            elif isinstance(command, Close):
                await self._handle_close(command)
                return
            else:
                await self._handle(command)

    async def _next_command(self) -> Command | None:
        """The next command, or None when the idle TTL ran out first."""
        if not self._inbox.empty():
            return self._inbox.get_nowait()
        timeout = self._ttl_remaining()
        if timeout is None:
            return await self._inbox.get()
        try:
            return await asyncio.wait_for(self._inbox.get(), timeout)
        except TimeoutError:
            return None

    async def _handle(self, command: Command) -> None:
        if isinstance(command, Acquire):
            await self._handle_acquire(command)
        elif isinstance(command, Release):
            await self._handle_release(command)
        elif isinstance(command, Load):
            await self._handle_load(command)
        elif isinstance(command, Unload):
            await self._handle_unload(command)
        elif isinstance(command, Exited):
            await self._handle_exited(command)

    async def _handle_acquire(self, command: Acquire) -> None:
        if command.reply.done():
            return  # the caller went away while queued
        if self._draining:
            self._deferred.append(command)
            return
        try:
            worker = await self._ensure_worker()
        except ModelUnavailable as exc:
            _reply(command.reply, error=exc)
            return
        if command.reply.done():
            return  # the caller went away while the worker started
        self._in_flight += 1
        self._stats.requests += 1
        _reply(command.reply, (worker, self._generation))

    async def _handle_release(self, command: Release) -> None:
        if command.generation != self._generation:
            return  # a request on a worker that has since died; already accounted for
        self._in_flight -= 1
        self._idle_since = self._clock()
        self._stats.last_used = time.time()
        if self._worker is not None and (rss := self._worker.rss_bytes()):
            self._measured_mb = max(self._measured_mb, rss / 1_048_576)
        if self._in_flight == 0 and self._draining:
            await self._finish_drain(await self._stop_worker(self._drain_reason))
        elif self._in_flight == 0:
            self._gate.notify()

    async def _handle_load(self, command: Load) -> None:
        if command.ttl is not None:
            self._ttl = command.ttl
        try:
            await self._ensure_worker()
        except ModelUnavailable as exc:
            _reply(command.reply, error=exc)
            return
        self._idle_since = self._clock()
        _reply(command.reply, None)

    async def _handle_unload(self, command: Unload) -> None:
        if self._state is State.FAILED:
            self._failures = 0
            self._set_state(State.UNLOADED, "unload clears the load error")
        if self._worker is None:
            _reply(command.reply, "not loaded")
        elif self._in_flight == 0:
            _reply(command.reply, await self._stop_worker(command.reason))
        else:
            self._drain_reason = command.reason
            self._draining.append(command.reply)  # stops when the last in-flight request ends

    async def _handle_exited(self, command: Exited) -> None:
        if command.worker is not self._worker:
            return  # a worker we already stopped on purpose
        reason = f"worker exited unexpectedly (code {command.worker.exit_code})"
        log.warning("model=%s pid=%d %s; the next request starts a new one", self.spec.name,
                    command.worker.pid, reason)
        self._stats.last_error = reason
        self._forget_worker("crash")
        self._set_state(State.UNLOADED, reason)
        self._gate.release(self)
        await self._finish_drain("crashed")

    async def _handle_close(self, command: Close) -> None:
        await self._stop_worker("shutdown")
        for pending in [*self._draining, *(c.reply for c in self._deferred)]:
            _reply(pending, error=ModelUnavailable("the server is shutting down"))
        while not self._inbox.empty():
            leftover = self._inbox.get_nowait()
            if hasattr(leftover, "reply"):
                _reply(leftover.reply, error=ModelUnavailable("the server is shutting down"))
        _reply(command.reply, None)

    # -- effects ----------------------------------------------------------------

    async def _ensure_worker(self) -> WorkerProcess:
        if self._worker is not None:
            return self._worker
        if self._state is State.FAILED and self._clock() < self._retry_at:
            wait = self._retry_at - self._clock()
            raise ModelUnavailable(
                f"model {self.spec.name!r} failed to load ({self._stats.last_error}); retrying in {wait:.0f}s",
                retry_after=wait,
            )
        try:
            await self._gate.reserve(self)
        except CapacityFull as exc:
            raise ModelUnavailable(str(exc), retry_after=exc.retry_after, code="capacity_full") from None
        self._set_state(State.STARTING, "request" if self._stats.requests else "first use")
        started = self._clock()
        try:
            worker = await self._launch(self.spec, self._post_exit)
        except (WorkerError, OSError) as exc:
            self._gate.release(self)
            self._failures += 1
            self._retry_at = self._clock() + backoff_seconds(self._failures)
            self._stats.last_error = str(exc)
            self._set_state(State.FAILED, str(exc))
            raise ModelUnavailable(f"model {self.spec.name!r} failed to load: {exc}",
                                   retry_after=backoff_seconds(self._failures)) from exc
        self._failures = 0
        self._worker = worker
        self._generation += 1
        self._stats.load_seconds = round(self._clock() - started, 3)
        self._stats.last_error = None
        self._stats.languages = worker.info.languages if worker.info else None
        self._set_state(State.READY, f"pid {worker.pid}")
        return worker

    async def _stop_worker(self, why: str) -> str:
        worker = self._worker
        if worker is None:
            return "not loaded"
        self._set_state(State.STOPPING, why)
        how = await worker.stop()
        if worker.info is not None and worker.info.device == "cuda":
            await devices.wait_vram_released(worker.pid, timeout=10.0)
        self._forget_worker(why)
        self._set_state(State.UNLOADED, f"{why}: pid {worker.pid} ended by {how}")
        self._gate.release(self)
        return how

    def _forget_worker(self, why: str) -> None:
        self._worker = None
        self._in_flight = 0  # their leases carry the old generation; releases are ignored
        self._generation += 1
        self._stats.unloads[why] = self._stats.unloads.get(why, 0) + 1

    async def _finish_drain(self, how: str) -> None:
        """Answer unload callers, then serve the requests that waited for the unload."""
        waiters, self._draining = self._draining, []
        for reply in waiters:
            _reply(reply, how)
        deferred, self._deferred = self._deferred, deque()
        for command in deferred:
            await self._handle_acquire(command)

    def _post_exit(self, worker: WorkerProcess) -> None:
        self._inbox.put_nowait(Exited(worker))

    def _set_state(self, new: State, reason: str) -> None:
        check_transition(self._state, new)
        log.info("model=%s state=%s→%s reason=%s", self.spec.name, self._state.value, new.value, reason)
        self._state = new

    def _ttl_remaining(self) -> float | None:
        """Seconds until the idle TTL fires, or None when it cannot fire now."""
        if self._state is not State.READY or self._in_flight or self._draining or self._ttl < 0:
            return None
        return max(0.0, round(self._idle_since + self._ttl - self._clock(), 3))


def _mb(size: int | None) -> float | None:
    return None if size is None else round(size / 1_048_576, 1)


def _reply(future: asyncio.Future[Any], value: Any = None, *, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
