"""Pure decisions about models: back-off, whether one more fits, whom to evict.

Plain functions of plain values, so they are tested alone, without processes, tasks
or clocks; `owner` and `capacity` only carry out what these decide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def backoff_seconds(failures: int, cap: float = 60.0) -> float:
    """Delay before retrying a model that failed to load `failures` times in a row."""
    if failures <= 0:
        return 0.0
    return min(cap, 2.0 ** (failures - 1))


@dataclass(frozen=True, slots=True)
class Limits:
    max_loaded_models: int = 0  # 0: no limit
    memory_budget_mb: float = 0  # 0: no limit
    wait_seconds: float = 30.0

    @property
    def enabled(self) -> bool:
        return bool(self.max_loaded_models or self.memory_budget_mb)

    def describe(self) -> str:
        parts = []
        if self.max_loaded_models:
            parts.append(f"max_loaded_models = {self.max_loaded_models}")
        if self.memory_budget_mb:
            parts.append(f"memory_budget_mb = {self.memory_budget_mb:g}")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class Resident:
    """A model that holds a worker (starting, ready or stopping), as the decisions see it."""

    name: str
    memory_mb: float
    idle: bool
    last_used: float  # monotonic seconds: smaller is longer ago


def fits(limits: Limits, residents: Sequence[Resident], new_memory_mb: float) -> bool:
    """Whether one more model of `new_memory_mb` may load beside `residents`."""
    if limits.max_loaded_models and len(residents) >= limits.max_loaded_models:
        return False
    if limits.memory_budget_mb and residents:  # a lone model bigger than the budget may still load
        used = sum(r.memory_mb for r in residents)
        if used + new_memory_mb > limits.memory_budget_mb:
            return False
    return True


def room_mb(limits: Limits, residents: Sequence[Resident]) -> float | None:
    """The memory the budget leaves a model loading beside `residents`; None without a budget.

    Its worker may fill it with extra model copies (`lane_weights = "auto"`), so a model
    that loads when the server is empty may take copies another would have to share.
    """
    if not limits.memory_budget_mb:
        return None
    return max(0.0, limits.memory_budget_mb - sum(r.memory_mb for r in residents))


def choose_victim(residents: Sequence[Resident]) -> str | None:
    """The least recently used idle model, or None when every resident is busy."""
    idle = [r for r in residents if r.idle]
    return min(idle, key=lambda r: r.last_used).name if idle else None
