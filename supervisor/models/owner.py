"""One owner task per model: the only code that starts, stops or counts a model's worker.

Callers never look at the state and then act on it (a TTL firing between the look
and the act is exactly the race that leaves requests on a dying process). They send
a command to the owner's inbox and await its reply:

    async with owner.lease() as lease:      # Acquire → the owner starts a worker if needed
        await lease.worker.transcribe(...)  # Release on exit → the owner restarts the TTL clock

The owner itself never waits on slow work: starting and stopping run as tasks of their
own (`worker_tasks`) that report back through the inbox (`Started`, `Stopped`), so an
unload or a shutdown that arrives mid-load is handled at once. Every handler is
synchronous; the only await is the inbox. The idle TTL is the timeout on that inbox read,
armed only while the worker is ready and nothing is in flight or queued, so it cannot
fire under a request.

Every state the model can be in is a `State`, and every change goes through `_move`
with the event that caused it, checked against `states.TABLE` (the table docs/design.md
shows). What follows a worker's end is `_after` (rest, restart for a reload, end for a
removal). The figures readers see (requests, memory, errors) live in `accounting`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from supervisor.config import ModelSpec
from supervisor.models.accounting import mb
from supervisor.models.capacity import Gate, OpenGate
from supervisor.models.clock import Clock, MonotonicClock
from supervisor.models.commands import (
    Acquire,
    Close,
    Grant,
    Load,
    Release,
    Respec,
    Retire,
    Status,
    Unload,
)
from supervisor.models.lease import Lease, ModelUnavailable
from supervisor.models.lifecycle import Lifecycle
from supervisor.models.snapshot import ModelSnapshot
from supervisor.models.states import State
from supervisor.models.tally import ModelTally
from supervisor.models.worker_tasks import Launcher

__all__ = ["Launcher", "Lease", "ModelOwner", "ModelUnavailable"]

log = logging.getLogger("asr.lifecycle")


class ModelOwner(Lifecycle):
    """The public side of a model's owner: each call posts a command and awaits the answer.

    The owner task and its handlers are `Lifecycle`'s; this class only talks to its inbox.
    """

    def __init__(
        self,
        spec: ModelSpec,
        launch: Launcher,
        clock: Clock | None = None,
        gate: Gate | None = None,
        memory_estimate_mb: float = 0.0,
    ) -> None:
        super().__init__(spec, launch, clock or MonotonicClock(), gate or OpenGate(), memory_estimate_mb)
        self.tally = ModelTally()  # its workers' starts and work, read by the metrics at scrape time
        self._task: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

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
                self._post(Release(reply.result()[1]))
            raise
        try:
            yield Lease(worker, wind_down)
        finally:
            self._post(Release(generation))

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
            "freed_rss_mb": mb(rss) if how != "not loaded" else 0.0,
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
            self._state in (State.READY, State.RETIRING)
            and not self._in_flight
            and not self._waiting
            and self._inbox.empty()
        )

    def last_used_monotonic(self) -> float:
        return self._idle_since

    def memory_estimate_mb(self) -> float:
        return self._account.memory_mb()

    def _new_reply(self) -> asyncio.Future[Any]:
        if self._task is None or self._task.done():
            raise ModelUnavailable(f"model {self.spec.name!r} is shut down")
        return asyncio.get_running_loop().create_future()
