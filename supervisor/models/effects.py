"""A model's state and the effects its owner's handlers start: grant, start, stop, forget.

The handlers (`lifecycle.Lifecycle`) decide; these carry the decision out, and every state
change goes through `_move(new, event)`, which checks it against `states.TABLE`. Nothing
here awaits: starting and stopping run as tasks (`worker_tasks`) that report back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import cast

from supervisor.config import ModelSpec
from supervisor.models import worker_tasks
from supervisor.models.accounting import ModelAccount, snapshot
from supervisor.models.capacity import Gate, Tenant
from supervisor.models.clock import Clock
from supervisor.models.commands import (
    Acquire,
    Command,
    Exited,
    Grant,
    answer,
)
from supervisor.models.lease import ModelUnavailable
from supervisor.models.snapshot import ModelSnapshot
from supervisor.models.states import After, Event, State, check_transition
from supervisor.models.tally import ModelTally
from supervisor.models.worker_tasks import Launcher
from supervisor.workers.process import WorkerProcess

log = logging.getLogger("asr.lifecycle")

SHUTTING_DOWN = "the server is shutting down"


class Effects:
    """What a model's owner holds, and the moves it makes; one per model, owned by its task."""

    spec: ModelSpec
    tally: ModelTally

    def __init__(self, spec: ModelSpec, launch: Launcher, clock: Clock, gate: Gate, estimate_mb: float) -> None:
        self.spec = spec
        self._launch = launch
        self._clock = clock
        self._gate = gate
        self._account = ModelAccount(estimate_mb)
        self._inbox: asyncio.Queue[Command] = asyncio.Queue()
        self._state = State.UNLOADED
        self._changed = asyncio.Event()  # set and replaced on every state change
        self._after = After.REST  # what follows the worker's end
        self._stop_reason = "unload"  # why the worker drains or stops
        self._ttl = spec.ttl
        self._worker: WorkerProcess | None = None
        self._generation = 0
        self._in_flight = 0
        self._idle_since = self._clock.now()
        self._failures = 0
        self._retry_at = 0.0
        self._start_began = 0.0
        self._waiting: deque[Acquire] = deque()  # requests for the next worker (mid-start, -stop or -drain)
        self._loads: list[asyncio.Future[None]] = []  # load() callers waiting for READY
        self._unloads: list[asyncio.Future[str]] = []  # unload() callers waiting for the worker's end
        self._closers: list[asyncio.Future[None]] = []
        self._retirer: asyncio.Future[str] | None = None  # removed by a reload: answered when the owner ends
        self._next_spec: tuple[ModelSpec, float] | None = None  # a reload's spec, for the next worker
        self._start_task: asyncio.Task[None] | None = None
        self._stop_task: asyncio.Task[None] | None = None
        #: Per worker generation: set when that worker is wanted back (see `Lease`).
        self._wind_down: dict[int, asyncio.Event] = {}

    def snapshot(self) -> ModelSnapshot:
        failed = self._state is State.FAILED
        return snapshot(
            self.spec,
            self._account,
            self._worker,
            state=self._state.shown,
            retiring=self._retirer is not None,
            ttl=self._ttl,
            ttl_remaining=self._ttl_remaining(),
            in_flight=self._in_flight,
            queued=self._inbox.qsize() + len(self._waiting),
            retry_in=round(max(0.0, self._retry_at - self._clock.now()), 1) if failed else None,
        )

    @property
    def _tenant(self) -> Tenant:
        """This model as the capacity gate knows it (`owner.ModelOwner` is one)."""
        return cast("Tenant", self)

    def _post(self, command: Command) -> None:
        self._inbox.put_nowait(command)

    def _grant(self, reply: asyncio.Future[Grant]) -> None:
        assert self._worker is not None
        self._in_flight += 1
        self._account.requests += 1
        answer(reply, (self._worker, self._generation, self._wind_down[self._generation]))

    def _start_if_stopped(self, event: Event) -> None:
        if self._state not in (State.UNLOADED, State.FAILED):
            return  # starting: it will serve them; stopping or draining: _resume() starts the next
        if self._after is After.RESTART:
            self._after = After.REST
        self._start_began = self._clock.now()
        self._move(State.STARTING, event, "request" if self._account.requests else "first use")
        self._start_task = asyncio.create_task(
            worker_tasks.start(self.spec, self._tenant, self._gate, self._launch, self._post_exit, self._inbox),
            name=f"start-{self.spec.name}",
        )

    def _abort_start(self, reason: str, event: Event, keep_loads: bool = False) -> None:
        self._stop_reason = reason
        closing = event is Event.SHUTDOWN
        self._move(State.CLOSING if closing else State.STOPPING, event, f"{reason} while loading")
        if not keep_loads:
            for reply in self._loads:
                answer(reply, error=ModelUnavailable(f"model {self.spec.name!r} was unloaded while loading ({reason})"))
            self._loads = []
        if self._start_task is not None:
            self._start_task.cancel()

    def _begin_stop(self, reason: str, event: Event) -> None:
        worker = self._worker
        assert worker is not None
        self._ask_leases_back()
        self._stop_reason = reason
        self._move(State.CLOSING if event is Event.SHUTDOWN else State.STOPPING, event, reason)
        self._stop_task = asyncio.create_task(worker_tasks.stop(worker, self._inbox), name=f"stop-{self.spec.name}")

    def _adopt(self, worker: WorkerProcess) -> None:
        self._worker = worker
        self.tally.adopted(worker)
        self._generation += 1
        self._wind_down[self._generation] = asyncio.Event()
        self._idle_since = self._clock.now()

    def _forget_worker(self, why: str) -> None:
        self.tally.forgotten()
        self._ask_leases_back()
        self._wind_down.pop(self._generation, None)
        self._worker = None
        self._in_flight = 0  # their leases carry the old generation; releases are ignored
        self._generation += 1
        self._account.ended(why)
        if self._next_spec is not None:  # a reload waited for this worker to go
            self._swap_spec(*self._next_spec)
            self._next_spec = None

    def _swap_spec(self, spec: ModelSpec, memory_estimate_mb: float) -> None:
        self.spec = spec
        self._account.new_spec(memory_estimate_mb)

    def _ask_leases_back(self) -> None:
        if (notice := self._wind_down.get(self._generation)) is not None:
            notice.set()

    def _resume(self) -> None:
        """After a worker ended: start the next one if requests or loads are waiting for it,
        or a reload is replacing it."""
        if any(not a.reply.done() for a in self._waiting):
            self._start_if_stopped(Event.REQUEST)
        elif self._loads:
            self._start_if_stopped(Event.LOAD)
        elif self._after is After.RESTART:
            self._start_if_stopped(Event.RELOAD)

    def _answer_unloads(self, how: str) -> None:
        for reply in self._unloads:
            answer(reply, how)
        self._unloads = []

    def _fail_waiters(self, error: ModelUnavailable) -> None:
        for acquire in self._waiting:
            answer(acquire.reply, error=error)
        self._waiting.clear()
        for reply in self._loads:
            answer(reply, error=error)
        self._loads = []

    def _backing_off(self) -> bool:
        return self._state is State.FAILED and self._clock.now() < self._retry_at

    def _backoff_error(self) -> ModelUnavailable:
        wait = self._retry_at - self._clock.now()
        return ModelUnavailable(
            f"model {self.spec.name!r} failed to load ({self._account.last_error}); retrying in {wait:.0f}s",
            retry_after=wait,
        )

    def _post_exit(self, worker: WorkerProcess) -> None:
        self._inbox.put_nowait(Exited(worker))

    def _move(self, new: State, event: Event, reason: str) -> None:
        check_transition(self._state, new, event)
        log.info("model=%s state=%s→%s reason=%s", self.spec.name, self._state.value, new.value, reason)
        self._state = new
        self._changed.set()
        self._changed = asyncio.Event()

    def _ttl_remaining(self) -> float | None:
        """Seconds until the idle TTL fires, or None when it cannot fire now."""
        if self._state is not State.READY or self._in_flight or self._ttl < 0:
            return None
        return max(0.0, round(self._idle_since + self._ttl - self._clock.now(), 3))
