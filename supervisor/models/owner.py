"""One owner task per model: the only code that starts, stops or counts a model's worker.

Callers never look at the state and then act on it (a TTL firing between the look
and the act is exactly the race that leaves requests on a dying process). They send
a command to the owner's inbox and await its reply:

    async with owner.lease() as lease:      # Acquire → the owner starts a worker if needed
        await lease.worker.transcribe(...)  # Release on exit → the owner restarts the TTL clock

The owner itself never waits on slow work. Starting (capacity, spawn, LOAD, READY) and
stopping (SHUTDOWN → SIGTERM → SIGKILL, VRAM release) run as tasks of their own that
report back through the inbox (`Started`, `Stopped`), so an unload or a shutdown that
arrives mid-load is handled at once: the start task is cancelled and its half-started
worker stopped and reaped. Every handler is synchronous; the only await is the inbox.

The idle TTL is the timeout on that inbox read, armed only while the worker is ready
and nothing is in flight or queued, so it cannot fire under a request. The state ×
event table lives in `states.py`.

A reload reaches a model through its inbox too: `Respec` hands it new keys (a worker whose
options changed is replaced once its in-flight requests are done; requests that come
meanwhile wait for the new one), `Retire` ends it once what it took on is finished.
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

from supervisor.config import ModelSpec
from supervisor.models.capacity import CapacityFull, Gate, OpenGate
from supervisor.models.clock import Clock, MonotonicClock
from supervisor.models.commands import (
    Acquire,
    Close,
    Command,
    Exited,
    Grant,
    Load,
    Release,
    Respec,
    Retire,
    Started,
    Status,
    Stopped,
    Unload,
)
from supervisor.models.policy import backoff_seconds
from supervisor.models.snapshot import ModelSnapshot
from supervisor.models.states import State, check_transition
from supervisor.models.tally import ModelTally
from supervisor.workers import devices
from supervisor.workers.process import WorkerError, WorkerProcess

log = logging.getLogger("asr.lifecycle")

#: Starts a worker for a spec and returns it READY; calls the callback when it exits.
#: If cancelled, it stops and reaps whatever it had started before re-raising.
Launcher = Callable[[ModelSpec, Callable[[WorkerProcess], None]], Awaitable[WorkerProcess]]


class ModelUnavailable(Exception):
    """The model cannot serve right now (load failed, backing off, server full, shutting down)."""

    def __init__(self, message: str, retry_after: float | None = None, code: str = "model_unavailable") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.code = code


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker held busy for one caller, and the owner's notice that it wants the worker back.

    `wind_down` is set when the worker is to be unloaded, evicted or shut down: a file request
    simply finishes, a live session (which could hold its lease for hours) finishes what it
    heard and ends, so the unload does not wait forever.
    """

    worker: WorkerProcess
    wind_down: asyncio.Event


@dataclass(slots=True)
class _Stats:
    """What the owner knows, copied into snapshots; advisory the moment it is read."""

    requests: int = 0
    load_seconds: float | None = None
    languages: list[str] | None = None  # from the last READY: known once loaded
    last_used: float | None = None  # time.time() of the last request's end
    last_error: str | None = None
    unloads: dict[str, int] = field(default_factory=dict)


class ModelOwner:
    def __init__(
        self,
        spec: ModelSpec,
        launch: Launcher,
        clock: Clock | None = None,
        gate: Gate | None = None,
        memory_estimate_mb: float = 0.0,
    ) -> None:
        self.spec = spec
        self._launch = launch
        self._clock: Clock = clock or MonotonicClock()
        self._gate: Gate = gate or OpenGate()
        self._memory_estimate_mb = memory_estimate_mb
        self._measured_mb = 0.0  # the largest RSS its worker has been seen at
        self._footprint_mb = 0.0  # what its last READY said the worker holds once every copy is loaded
        self._inbox: asyncio.Queue[Command] = asyncio.Queue()
        self._state = State.UNLOADED
        self._changed = asyncio.Event()  # set and replaced on every state change
        self._ttl = spec.ttl
        self._worker: WorkerProcess | None = None
        self._generation = 0
        self._in_flight = 0
        self._idle_since = self._clock.now()
        self._failures = 0
        self._retry_at = 0.0
        self._waiting: deque[Acquire] = deque()  # requests for the next worker (mid-start, -stop or -drain)
        self._loads: list[asyncio.Future[None]] = []  # load() callers waiting for READY
        self._unloads: list[asyncio.Future[str]] = []  # unload() callers waiting for the worker's end
        self._draining: str | None = None  # why to stop once the in-flight requests end
        self._stop_reason = "unload"
        self._closing: asyncio.Future[None] | None = None
        self._retiring: asyncio.Future[str] | None = None  # removed by a reload: end once idle
        self._next_spec: tuple[ModelSpec, float] | None = None  # a reload's spec, for the next worker
        self._restart = False  # a reload replaces the worker: start the next one without a request
        self._attempt = 0
        self._start_began = 0.0
        self._start_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        self._stats = _Stats()
        self.tally = ModelTally()  # its workers' starts and work, read by the metrics at scrape time
        self._task: asyncio.Task[None] | None = None
        #: Per worker generation: set when that worker is wanted back (see `Lease`).
        self._wind_down: dict[int, asyncio.Event] = {}

    @property
    def name(self) -> str:
        return self.spec.name

    # -- the public API: send a command, await the reply ------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"owner-{self.spec.name}")

    @property
    def running(self) -> bool:
        """The owner task is there to read what is posted now (false once closed or retired)."""
        return self._task is not None and not self._task.done()

    def respec(self, spec: ModelSpec, memory_estimate_mb: float) -> asyncio.Future[str]:
        """A reload's new keys for this model (see `Respec` for the answer).

        Posted before this returns, so a reload posts every change in one step, with no
        request routed in between, and awaits the answers after.
        """
        reply: asyncio.Future[str] = self._new_reply()
        self._post(Respec(reply, spec, memory_estimate_mb))
        return reply

    def retire(self) -> asyncio.Future[str]:
        """The model was removed: finish in-flight requests, stop the worker, end (see `Retire`)."""
        reply: asyncio.Future[str] = self._new_reply()
        self._post(Retire(reply))
        return reply

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[Lease]:
        """A ready worker, held busy (never stopped by the TTL) until the block exits."""
        reply: asyncio.Future[Grant] = self._new_reply()
        self._post(Acquire(reply))
        try:
            worker, generation, wind_down = await reply
        except asyncio.CancelledError:
            # Cancelled just after the owner granted the lease: hand it back, or the
            # model would count a request in flight forever and never unload.
            if reply.done() and not reply.cancelled() and reply.exception() is None:
                self._inbox.put_nowait(Release(reply.result()[1]))
            raise
        try:
            yield Lease(worker, wind_down)
        finally:
            self._inbox.put_nowait(Release(generation))

    async def load(self, ttl: int | None = None) -> None:
        """Start the worker now (if needed); `ttl` replaces the model's TTL from now on."""
        reply: asyncio.Future[None] = self._new_reply()
        self._post(Load(reply, ttl))
        await reply

    async def unload(self, reason: str = "unload") -> dict[str, Any]:
        """Stop the worker once its in-flight requests are done; says how it ended and what it freed."""
        worker = self._worker  # for the report only: the owner decides
        rss = worker.rss_bytes() if worker else None
        reply: asyncio.Future[str] = self._new_reply()
        self._post(Unload(reply, reason))
        how = await reply
        return {
            "model": self.spec.name,
            "pid": worker.pid if worker else None,
            "ended_by": how,
            "freed_rss_mb": _mb(rss) if how != "not loaded" else 0.0,
        }

    async def status(self) -> ModelSnapshot:
        """A snapshot consistent with every command sent before it."""
        reply: asyncio.Future[ModelSnapshot] = self._new_reply()
        self._post(Status(reply))
        return await reply

    async def wait_for_state(self, *states: State) -> None:
        """Return once the model is in one of `states` (now or later)."""
        while self._state not in states:
            await self._changed.wait()

    async def close(self) -> None:
        """Shut down: abort a start, stop the worker now (in-flight or not), fail whoever waits."""
        if self._task is None or self._task.done():
            return
        reply: asyncio.Future[None] = self._new_reply()
        self._post(Close(reply))
        await reply
        await self._task

    # -- advisory reads for the capacity gate (it acts only through unload()) ------

    def is_idle(self) -> bool:
        return (
            self._state is State.READY
            and not self._in_flight
            and self._draining is None
            and not self._waiting
            and self._inbox.empty()
        )

    def last_used_monotonic(self) -> float:
        return self._idle_since

    def memory_estimate_mb(self) -> float:
        """What memory_budget_mb counts for this model, every model copy included.

        The larger of its worker's largest RSS seen and the footprint its READY announced:
        extra copies load just after READY, and are counted from READY on, before they are
        spent. Before any READY, the estimate from its files (`files.memory_estimate_mb`).
        """
        return max(self._measured_mb, self._footprint_mb) or self._memory_estimate_mb

    def snapshot(self) -> ModelSnapshot:
        worker = self._worker
        info = worker.info if worker else None
        return ModelSnapshot(
            state=self._state.value,
            retiring=self._retiring is not None,
            backend=self.spec.backend,
            source=self.spec.source,
            description=self.spec.description,
            pid=worker.pid if worker else None,
            device=info.device if info else None,
            compute_type=info.compute_type if info else None,
            concurrency=info.concurrency if info else None,
            copies=info.copies if info else None,
            lane_weights=info.lane_weights if info else None,
            lanes_reason=info.lanes_reason or None if info else None,
            lanes_open=beat.lanes if worker and (beat := worker.last_heartbeat) else None,
            copy_mb=info.copy_mb or None if info else None,
            rss_mb=_mb(worker.rss_bytes()) if worker else None,
            memory_mb=round(self.memory_estimate_mb(), 1),
            languages=self._stats.languages,
            ttl=self._ttl,
            ttl_remaining=self._ttl_remaining(),
            in_flight=self._in_flight,
            queued=self._inbox.qsize() + len(self._waiting),
            requests=self._stats.requests,
            load_seconds=self._stats.load_seconds,
            last_used=self._stats.last_used,
            last_error=self._stats.last_error,
            unloads=dict(self._stats.unloads),
            retry_in=round(max(0.0, self._retry_at - self._clock.now()), 1) if self._state is State.FAILED else None,
        )

    def _new_reply(self) -> asyncio.Future[Any]:
        if self._task is None or self._task.done():
            raise ModelUnavailable(f"model {self.spec.name!r} is shut down")
        return asyncio.get_running_loop().create_future()

    def _post(self, command: Command) -> None:
        self._inbox.put_nowait(command)

    # -- the owner task -----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            command = await self._next_command()
            if command is None:
                self._begin_stop("ttl")
            else:
                try:
                    self._handle(command)
                except Exception as exc:  # a bug of ours: it must not end the owner, or every caller hangs
                    log.exception("model=%s the owner failed handling %s", self.spec.name, type(command).__name__)
                    if isinstance(reply := getattr(command, "reply", None), asyncio.Future):
                        _reply(reply, error=ModelUnavailable(f"internal error in model {self.spec.name!r}: {exc}"))
            if self._retiring is not None:
                self._retire_if_idle()
            if self._finished():
                self._end()
                return

    async def _next_command(self) -> Command | None:
        """The next command, or None when the idle TTL ran out first."""
        if not self._inbox.empty():
            return self._inbox.get_nowait()
        timeout = self._ttl_remaining()
        if timeout is None:
            return await self._inbox.get()
        getter = asyncio.ensure_future(self._inbox.get())
        timer = self._clock.timer(timeout)
        pending: set[asyncio.Future[Any]] = {getter, timer}
        try:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        if getter.done():
            return getter.result()
        getter.cancel()  # an item it was woken for stays in the queue
        return self._inbox.get_nowait() if not self._inbox.empty() else None

    def _handle(self, command: Command) -> None:
        match command:
            case Acquire():
                self._on_acquire(command)
            case Release():
                self._on_release(command)
            case Load():
                self._on_load(command)
            case Unload():
                self._on_unload(command)
            case Status():
                _reply(command.reply, self.snapshot())
            case Close():
                self._on_close(command)
            case Respec():
                self._on_respec(command)
            case Retire():
                self._on_retire(command)
            case Exited():
                self._on_exited(command)
            case Started():
                self._on_started(command)
            case Stopped():
                self._on_stopped(command)

    def _on_acquire(self, command: Acquire) -> None:
        if command.reply.done():
            return  # the caller went away while queued
        if self._closing is not None:
            _reply(command.reply, error=ModelUnavailable("the server is shutting down"))
        elif self._state is State.READY and self._draining is None:
            self._grant(command.reply)
        elif self._backing_off():
            _reply(command.reply, error=self._backoff_error())
        else:
            self._waiting.append(command)
            self._start_if_stopped()

    def _on_release(self, command: Release) -> None:
        if command.generation != self._generation:
            return  # a request on a worker that has since died; already accounted for
        self._in_flight -= 1
        self._idle_since = self._clock.now()
        self._stats.last_used = time.time()
        if self._worker is not None and (rss := self._worker.rss_bytes()):
            self._measured_mb = max(self._measured_mb, rss / 1_048_576)
        if self._in_flight == 0 and self._draining is not None:
            self._begin_stop(self._draining)
        elif self._in_flight == 0:
            self._gate.notify()

    def _on_load(self, command: Load) -> None:
        if command.ttl is not None:
            self._ttl = command.ttl
        if self._closing is not None:
            _reply(command.reply, error=ModelUnavailable("the server is shutting down"))
        elif self._state is State.READY and self._draining is None:
            self._idle_since = self._clock.now()
            _reply(command.reply, None)
        elif self._backing_off():
            _reply(command.reply, error=self._backoff_error())
        else:
            self._loads.append(command.reply)
            self._start_if_stopped()

    def _on_unload(self, command: Unload) -> None:
        if self._state is State.FAILED:
            self._failures = 0
            self._set_state(State.UNLOADED, "unload clears the load error")
        if self._state is State.UNLOADED:
            _reply(command.reply, "not loaded")
            return
        self._unloads.append(command.reply)
        self._restart = False  # an unload wins over a reload's replacement
        if self._state is State.STARTING:
            self._abort_start(command.reason)
        elif self._state is State.READY and self._in_flight:
            self._draining = command.reason  # stops when the last in-flight request ends
            self._ask_leases_back()
        elif self._state is State.READY:
            self._begin_stop(command.reason)
        # STOPPING: answered when the worker has been reaped

    def _on_close(self, command: Close) -> None:
        self._closing = command.reply
        self._fail_waiters(ModelUnavailable("the server is shutting down"))
        if self._state is State.STARTING:
            self._abort_start("shutdown")
        elif self._state is State.READY:
            self._begin_stop("shutdown")  # at once: the HTTP server has already drained its requests

    def _on_respec(self, command: Respec) -> None:
        if self._closing is not None:
            _reply(command.reply, "shutting down")
            return
        if self._retiring is not None:  # removed, then brought back before it ended
            _reply(self._retiring, "kept")
            self._retiring = None
        old, new = self.spec, command.spec
        if new.ttl != old.ttl:
            self._ttl = new.ttl  # else a TTL set by `load(ttl)` stands
        if new.options == old.options:  # the supervisor's keys only: nothing for the worker
            self.spec = new
            self._memory_estimate_mb = command.memory_estimate_mb
            _reply(command.reply, "applied")
            return
        self._failures = 0  # new options, a fresh start: no back-off from the old ones' failures
        if self._state is State.READY:
            # The running worker has the old options: it finishes what it took on, then goes.
            self._next_spec = (new, command.memory_estimate_mb)
            if self._draining is None:  # else an unload is under way, and wins
                self._restart = True
                self._draining = "reload"
            if self._in_flight:
                self._ask_leases_back()
                _reply(command.reply, "replaced once idle")
            else:
                self._begin_stop(self._draining or "reload")
                _reply(command.reply, "replacing")
            return
        self._next_spec = None
        self._swap_spec(new, command.memory_estimate_mb)
        if self._state is State.STARTING:  # loading the old options: start again with the new
            self._restart = True
            self._abort_start("reload", keep_loads=True)
            _reply(command.reply, "replacing")
            return
        if self._state is State.FAILED:
            self._set_state(State.UNLOADED, "reload: new settings, no back-off")
        _reply(command.reply, "applied")  # unloaded, or stopping: the next worker has the new options

    def _on_retire(self, command: Retire) -> None:
        self._retiring = command.reply
        self._restart = False
        for reply in self._loads:
            _reply(reply, error=ModelUnavailable(f"model {self.spec.name!r} was removed from the configuration"))
        self._loads = []
        if self._state is State.READY and self._in_flight:
            self._ask_leases_back()  # live sessions finish what they heard; file requests just finish
        # The rest is `_retire_if_idle`, after every command from now on.

    def _on_exited(self, command: Exited) -> None:
        if command.worker is not self._worker or self._state is not State.READY:
            return  # a worker being stopped on purpose: its stop task reports
        reason = f"worker exited unexpectedly (code {command.worker.exit_code})"
        if command.worker.death_reason:  # the supervisor's own reason, e.g. a worker that froze
            reason = f"{reason}: {command.worker.death_reason}"
        log.warning("model=%s pid=%d %s; the next request starts a new one", self.spec.name, command.worker.pid, reason)
        self._stats.last_error = reason
        self._forget_worker("hung" if command.worker.hung else "crash")
        self._set_state(State.UNLOADED, reason)
        self._gate.release(self)
        self._answer_unloads("crashed")
        self._resume()

    def _on_started(self, event: Started) -> None:
        self._start_task = None
        if self._state is State.STOPPING:  # an unload or shutdown arrived mid-start
            if event.worker is not None:
                self._adopt(event.worker, self._clock.now())
                self._stop_task = asyncio.create_task(self._stop(event.worker), name=f"stop-{self.spec.name}")
            else:
                self._on_stopped(Stopped(worker=None, how="aborted while loading"))
            return
        if event.worker is not None:
            self._failures = 0
            self._stats.load_seconds = round(self._clock.now() - self._start_began, 3)
            self._stats.last_error = None
            self._adopt(event.worker, self._clock.now())
            self._set_state(State.READY, f"pid {event.worker.pid}")
            for reply in self._loads:
                _reply(reply, None)
            self._loads = []
            waiting, self._waiting = self._waiting, deque()
            for acquire in waiting:
                if not acquire.reply.done():
                    self._grant(acquire.reply)
            if not self._in_flight:
                self._gate.notify()  # loaded and idle: a waiting reservation may evict it
            return
        if event.capacity_full:
            error = ModelUnavailable(
                str(event.error), retry_after=getattr(event.error, "retry_after", None), code="capacity_full"
            )
            self._set_state(State.UNLOADED, "capacity full")
        else:
            self._failures += 1
            self._retry_at = self._clock.now() + backoff_seconds(self._failures)
            self._stats.last_error = str(event.error)
            self._set_state(State.FAILED, str(event.error))
            error = ModelUnavailable(
                f"model {self.spec.name!r} failed to load: {event.error}", retry_after=backoff_seconds(self._failures)
            )
        self._fail_waiters(error)

    def _on_stopped(self, event: Stopped) -> None:
        self._stop_task = None
        worker = self._worker
        self._forget_worker(self._stop_reason)
        pid = f"pid {worker.pid}" if worker else "the half-started worker"
        self._set_state(State.UNLOADED, f"{self._stop_reason}: {pid} ended by {event.how}")
        self._gate.release(self)
        self._answer_unloads(event.how)
        self._resume()

    # -- effects ----------------------------------------------------------------

    def _grant(self, reply: asyncio.Future[Grant]) -> None:
        assert self._worker is not None
        self._in_flight += 1
        self._stats.requests += 1
        _reply(reply, (self._worker, self._generation, self._wind_down[self._generation]))

    def _start_if_stopped(self) -> None:
        if self._state not in (State.UNLOADED, State.FAILED):
            return  # starting: it will serve them; stopping or draining: _resume() starts the next
        self._restart = False
        self._attempt += 1
        self._start_began = self._clock.now()
        self._set_state(State.STARTING, "request" if self._stats.requests else "first use")
        self._start_task = asyncio.create_task(self._start(self._attempt), name=f"start-{self.spec.name}")

    async def _start(self, attempt: int) -> None:
        """Reserve capacity, then launch; the outcome goes back to the owner's inbox."""
        outcome = Started(attempt)
        try:
            await self._gate.reserve(self)
            try:
                outcome.worker = await self._launch(self.spec, self._post_exit)
            except BaseException:
                self._gate.release(self)
                raise
        except asyncio.CancelledError:
            pass  # aborted by the owner: the launcher has stopped and reaped what it started
        except CapacityFull as exc:
            outcome.error, outcome.capacity_full = exc, True
        except Exception as exc:  # a failed load, whatever raised it: the owner must hear of it
            if not isinstance(exc, (WorkerError, OSError)):
                log.exception("model=%s unexpected error while starting its worker", self.spec.name)
            outcome.error = exc
        finally:
            self._inbox.put_nowait(outcome)

    def _abort_start(self, reason: str, keep_loads: bool = False) -> None:
        self._stop_reason = reason
        self._set_state(State.STOPPING, f"{reason} while loading")
        if not keep_loads:
            for reply in self._loads:
                _reply(reply, error=ModelUnavailable(f"model {self.spec.name!r} was unloaded while loading ({reason})"))
            self._loads = []
        if self._start_task is not None:
            self._start_task.cancel()

    def _begin_stop(self, reason: str) -> None:
        worker = self._worker
        assert worker is not None
        self._ask_leases_back()
        self._stop_reason = reason
        self._draining = None
        self._set_state(State.STOPPING, reason)
        self._stop_task = asyncio.create_task(self._stop(worker), name=f"stop-{self.spec.name}")

    async def _stop(self, worker: WorkerProcess) -> None:
        how = "stop failed"
        try:
            how = await worker.stop()
            if worker.info is not None and worker.info.device == "cuda":
                await devices.wait_vram_released(worker.pid, timeout=10.0)
        finally:
            self._inbox.put_nowait(Stopped(worker, how))

    def _adopt(self, worker: WorkerProcess, now: float) -> None:
        self._worker = worker
        self.tally.adopted(worker)
        self._generation += 1
        self._wind_down[self._generation] = asyncio.Event()
        self._idle_since = now
        self._stats.languages = worker.info.languages if worker.info else None
        if worker.info is not None and worker.info.footprint_mb:
            self._footprint_mb = worker.info.footprint_mb

    def _forget_worker(self, why: str) -> None:
        self.tally.forgotten()
        self._ask_leases_back()
        self._wind_down.pop(self._generation, None)
        self._worker = None
        self._in_flight = 0  # their leases carry the old generation; releases are ignored
        self._generation += 1
        self._draining = None
        self._stats.unloads[why] = self._stats.unloads.get(why, 0) + 1
        if self._next_spec is not None:  # a reload waited for this worker to go
            self._swap_spec(*self._next_spec)
            self._next_spec = None

    def _swap_spec(self, spec: ModelSpec, memory_estimate_mb: float) -> None:
        self.spec = spec
        self._memory_estimate_mb = memory_estimate_mb
        self._measured_mb = self._footprint_mb = 0.0  # a new worker's memory is measured anew

    def _retire_if_idle(self) -> None:
        """A removed model stops as soon as nothing is in flight or waiting for it."""
        waiting = any(not a.reply.done() for a in self._waiting)
        if self._closing is not None or waiting:
            return
        if self._state is State.READY and not self._in_flight and self._draining is None:
            self._begin_stop("removed")
        elif self._state is State.STARTING and not self._loads:
            self._abort_start("removed")

    def _finished(self) -> bool:
        if not self._settled():
            return False
        if self._closing is not None:
            return True
        # A retiring owner reads everything already posted first: a reload that brings the
        # model back (`Respec`) may be queued behind the report that settled it.
        waiting = self._loads or any(not a.reply.done() for a in self._waiting)
        return self._retiring is not None and not waiting and self._inbox.empty()

    def _end(self) -> None:
        """The owner task's last act: answer its closer or retirer, and whatever is still posted.

        Nothing posted after this is read (`_new_reply` refuses once the task is done, in this
        same step of the loop), so nobody is left waiting on an owner that is gone.
        """
        if self._closing is not None:
            _reply(self._closing, None)
        if self._retiring is not None:
            _reply(self._retiring, "shut down" if self._closing is not None else "retired")
        gone = ModelUnavailable(
            "the server is shutting down"
            if self._closing is not None
            else f"model {self.spec.name!r} was removed from the configuration"
        )
        while not self._inbox.empty():
            match self._inbox.get_nowait():
                case Close(reply=reply):
                    _reply(reply, None)
                case Acquire(reply=reply) | Load(reply=reply) | Status(reply=reply):
                    _reply(reply, error=gone)
                case Unload(reply=reply):
                    _reply(reply, "not loaded")
                case Retire(reply=reply) | Respec(reply=reply):
                    _reply(reply, "shut down" if self._closing is not None else "retired")
                case _:
                    pass  # reports and releases: there is nobody left to tell

    def _ask_leases_back(self) -> None:
        if (notice := self._wind_down.get(self._generation)) is not None:
            notice.set()

    def _resume(self) -> None:
        """After a worker ended: start the next one if requests or loads are waiting for it,
        or a reload is replacing it."""
        wanted = self._loads or any(not a.reply.done() for a in self._waiting)
        if self._closing is None and (wanted or (self._restart and self._retiring is None)):
            self._start_if_stopped()

    def _answer_unloads(self, how: str) -> None:
        for reply in self._unloads:
            _reply(reply, how)
        self._unloads = []

    def _fail_waiters(self, error: ModelUnavailable) -> None:
        for acquire in self._waiting:
            _reply(acquire.reply, error=error)
        self._waiting.clear()
        for reply in self._loads:
            _reply(reply, error=error)
        self._loads = []

    def _backing_off(self) -> bool:
        return self._state is State.FAILED and self._clock.now() < self._retry_at

    def _backoff_error(self) -> ModelUnavailable:
        wait = self._retry_at - self._clock.now()
        return ModelUnavailable(
            f"model {self.spec.name!r} failed to load ({self._stats.last_error}); retrying in {wait:.0f}s",
            retry_after=wait,
        )

    def _settled(self) -> bool:
        return self._state in (State.UNLOADED, State.FAILED) and self._start_task is None and self._stop_task is None

    def _post_exit(self, worker: WorkerProcess) -> None:
        self._inbox.put_nowait(Exited(worker))

    def _set_state(self, new: State, reason: str) -> None:
        check_transition(self._state, new)
        log.info("model=%s state=%s→%s reason=%s", self.spec.name, self._state.value, new.value, reason)
        self._state = new
        self._changed.set()
        self._changed = asyncio.Event()

    def _ttl_remaining(self) -> float | None:
        """Seconds until the idle TTL fires, or None when it cannot fire now."""
        if (
            self._state is not State.READY
            or self._in_flight
            or self._draining is not None
            or self._ttl < 0
            or self._closing is not None
        ):
            return None
        return max(0.0, round(self._idle_since + self._ttl - self._clock.now(), 3))


def _mb(size: int | None) -> float | None:
    return None if size is None else round(size / 1_048_576, 1)


def _reply(future: asyncio.Future[Any], value: Any = None, *, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
