"""How many models may be loaded at once, and who makes room when one more is wanted.

A model's start task calls `reserve()` before it spawns a worker. Reservations are
decided one at a time (a lock), so two models cannot both squeeze into the last place.
When the new model does not fit (`max_loaded_models`, `memory_budget_mb`), the least
recently used *idle* model is unloaded first. If every loaded model is busy, the
reservation waits for one to become idle. The whole reservation (the lock, evictions,
the wait) is bounded by `capacity_wait` seconds; then it fails with a Retry-After.
Nothing is lost: an eviction goes through the victim's own owner, which finishes that
model's in-flight requests before it stops.

The gate sees models only through `Tenant`, the few advisory reads and the one action
it needs, so it does not depend on the owner's module. What to do is decided by the
pure functions in `policy`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from supervisor.models.policy import Limits, Resident, choose_victim, fits, room_mb

log = logging.getLogger("asr.capacity")

__all__ = ["Capacity", "CapacityFull", "Gate", "Limits", "OpenGate", "Tenant"]


class Tenant(Protocol):
    """What the gate needs of a model: who it is, advisory reads, and a way to ask it to leave."""

    @property
    def name(self) -> str: ...

    def is_idle(self) -> bool: ...

    def last_used_monotonic(self) -> float: ...

    def memory_estimate_mb(self) -> float: ...

    async def unload(self, reason: str = "unload") -> Any: ...


class Gate(Protocol):
    """Admission to load a model (OpenGate admits everyone)."""

    async def reserve(self, tenant: Tenant) -> None: ...

    def release(self, tenant: Tenant) -> None: ...

    def notify(self) -> None: ...


class OpenGate:
    async def reserve(self, tenant: Tenant) -> None:
        return None

    def release(self, tenant: Tenant) -> None:
        return None

    def notify(self) -> None:
        return None


class CapacityFull(Exception):
    """Every place is taken by a busy model; `retry_after` is a hint in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Capacity:
    def __init__(self, limits: Limits, tenants: Callable[[], Iterable[Tenant]]) -> None:
        self.limits = limits
        self._tenants = tenants
        self._holders: set[str] = set()  # models with a worker (starting, ready or stopping)
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self.waits = 0  # reservations that had to wait for a busy model to become idle (metrics)
        self.refusals = 0  # reservations that gave up after capacity_wait (CapacityFull)

    @property
    def enabled(self) -> bool:
        return self.limits.enabled

    async def reserve(self, tenant: Tenant) -> None:
        """Return once `tenant` may start a worker; raise CapacityFull after `capacity_wait` seconds."""
        if not self.enabled:
            self._holders.add(tenant.name)
            return
        try:
            async with asyncio.timeout(self.limits.wait_seconds), self._lock:
                await self._make_room(tenant)
                self._holders.add(tenant.name)
        except TimeoutError:
            self.refusals += 1
            raise CapacityFull(
                f"cannot load model {tenant.name!r}: every loaded model is busy "
                f"({self.limits.describe()}); retry shortly",
                retry_after=max(1.0, self.limits.wait_seconds / 2),
            ) from None

    def release(self, tenant: Tenant) -> None:
        """The tenant's worker is gone (stopped, crashed or never started)."""
        self._holders.discard(tenant.name)
        self._changed.set()

    def notify(self) -> None:
        """A model became idle: a waiting reservation may now evict it."""
        self._changed.set()

    def room_mb(self, name: str) -> float | None:
        """What memory_budget_mb leaves model `name` beside the other models holding a worker."""
        return room_mb(self.limits, [_resident(t) for t in self._others(name).values()])

    def _others(self, name: str) -> dict[str, Tenant]:
        return {t.name: t for t in self._tenants() if t.name in self._holders and t.name != name}

    async def _make_room(self, tenant: Tenant) -> None:
        waited = False
        while True:
            others = self._others(tenant.name)
            residents = [_resident(t) for t in others.values()]
            if fits(self.limits, residents, tenant.memory_estimate_mb()):
                return
            victim = choose_victim(residents)
            if victim is not None:
                log.info("evicting model=%s (least recently used, idle) to load model=%s", victim, tenant.name)
                await others[victim].unload(reason="evicted")
                continue
            if not waited:
                waited = True
                self.waits += 1
            self._changed.clear()
            await self._changed.wait()


def _resident(tenant: Tenant) -> Resident:
    return Resident(tenant.name, tenant.memory_estimate_mb(), tenant.is_idle(), tenant.last_used_monotonic())
