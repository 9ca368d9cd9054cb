"""How many models may be loaded at once, and who makes room when one more is wanted.

A model's owner calls `reserve()` before it spawns a worker. Reservations are decided
one at a time (a lock), so two models cannot both squeeze into the last place. When
the new model does not fit (`max_loaded_models`, `memory_budget_mb`), the least recently
used *idle* model is unloaded first. If every loaded model is busy, the reservation
waits, bounded by `capacity_wait` seconds, for one to become idle; then it fails with
a Retry-After. Nothing is lost: an eviction goes through the victim's own owner, which
finishes that model's in-flight requests before it stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from supervisor.models.owner import ModelSlot

log = logging.getLogger("asr.capacity")


class Gate(Protocol):
    """Admission to load a model: what `ModelSlot` needs of `Capacity` (OpenGate admits everyone)."""

    async def reserve(self, slot: ModelSlot) -> None: ...

    def release(self, slot: ModelSlot) -> None: ...

    def notify(self) -> None: ...


class OpenGate:
    async def reserve(self, slot: ModelSlot) -> None:
        return None

    def release(self, slot: ModelSlot) -> None:
        return None

    def notify(self) -> None:
        return None


class CapacityFull(Exception):
    """Every place is taken by a busy model; `retry_after` is a hint in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Limits:
    max_loaded_models: int = 0  # 0: no limit
    memory_budget_mb: float = 0  # 0: no limit
    wait_seconds: float = 30.0


class Capacity:
    def __init__(self, limits: Limits, slots: Callable[[], list[ModelSlot]]) -> None:
        self.limits = limits
        self._slots = slots
        self._holders: set[str] = set()  # models with a worker (starting, ready or stopping)
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return bool(self.limits.max_loaded_models or self.limits.memory_budget_mb)

    async def reserve(self, slot: ModelSlot) -> None:
        """Return once `slot` may start a worker; raise CapacityFull after the bounded wait."""
        if not self.enabled:
            self._holders.add(slot.spec.name)
            return
        deadline = time.monotonic() + self.limits.wait_seconds
        async with self._lock:
            while not self._fits(slot):
                victim = self._least_recently_used_idle(exclude=slot)
                if victim is not None:
                    log.info("evicting model=%s (least recently used, idle) to load model=%s",
                             victim.spec.name, slot.spec.name)
                    await victim.unload(reason="evicted")
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CapacityFull(
                        f"cannot load model {slot.spec.name!r}: every loaded model is busy "
                        f"({self._describe_limits()}); retry shortly",
                        retry_after=max(1.0, self.limits.wait_seconds / 2),
                    )
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    pass
            self._holders.add(slot.spec.name)

    def release(self, slot: ModelSlot) -> None:
        """The slot's worker is gone (stopped, crashed or never started)."""
        self._holders.discard(slot.spec.name)
        self._changed.set()

    def notify(self) -> None:
        """A model became idle: a waiting reservation may now evict it."""
        self._changed.set()

    def _fits(self, slot: ModelSlot) -> bool:
        others = [s for s in self._slots() if s.spec.name in self._holders and s is not slot]
        if self.limits.max_loaded_models and len(others) >= self.limits.max_loaded_models:
            return False
        if self.limits.memory_budget_mb:
            used = sum(s.memory_estimate_mb() for s in others)
            if others and used + slot.memory_estimate_mb() > self.limits.memory_budget_mb:
                return False  # a lone model that is bigger than the budget may still load
        return True

    def _least_recently_used_idle(self, exclude: ModelSlot) -> ModelSlot | None:
        idle = [s for s in self._slots() if s is not exclude and s.spec.name in self._holders and s.is_idle()]
        return min(idle, key=lambda s: s.last_used_monotonic(), default=None)

    def _describe_limits(self) -> str:
        parts = []
        if self.limits.max_loaded_models:
            parts.append(f"max_loaded_models = {self.limits.max_loaded_models}")
        if self.limits.memory_budget_mb:
            parts.append(f"memory_budget_mb = {self.limits.memory_budget_mb:g}")
        return ", ".join(parts)
