"""What all Wyoming connections may hold together: connections, and bytes of audio.

The per-utterance cap (`max_upload_mb`) bounds one client; these bound many. Each
connection takes a slot for its lifetime and an `Allowance` on the shared audio budget;
everything it holds goes back when it ends, whatever the way it ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.config import ServerTable
from supervisor.interfaces.wyoming.events import Refusal


class AudioBudget:
    """Bytes of audio held for every connection together."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.held = 0

    def allowance(self) -> Allowance:
        return Allowance(self)


class Allowance:
    """One connection's share of the budget: what it holds, given back by `close()`."""

    def __init__(self, budget: AudioBudget) -> None:
        self._budget = budget
        self.held = 0

    def hold(self, size: int) -> None:
        """Count `size` more bytes, or refuse (`too_much_audio`) if the budget is spent."""
        budget = self._budget
        if budget.held + size > budget.max_bytes:
            raise Refusal(
                "too_much_audio",
                f"the server holds {budget.held / 1e6:.0f} MB of Wyoming audio, its limit "
                f"(server.wyoming_max_buffered_mb); try again later",
            )
        budget.held += size
        self.held += size

    def release(self, size: int) -> None:
        size = min(size, self.held)
        self.held -= size
        self._budget.held -= size

    def close(self) -> None:
        self.release(self.held)


@dataclass
class WyomingLimits:
    """Shared by every connection of one listener."""

    max_connections: int
    budget: AudioBudget
    max_utterance_bytes: int  # one utterance, whether buffered or streamed to a live session
    idle_timeout: float  # a connection silent this long is closed
    connections: int = 0
    accepted: int = 0  # connections let in since start (metrics)
    refused: int = 0  # connections turned away at the limit

    @classmethod
    def from_settings(cls, server: ServerTable) -> WyomingLimits:
        return cls(
            max_connections=server.wyoming_max_connections,
            budget=AudioBudget(int(server.wyoming_max_buffered_mb * 1_000_000)),
            max_utterance_bytes=int(server.max_upload_mb * 1_000_000),
            idle_timeout=server.wyoming_idle_timeout,
        )

    def enter(self) -> None:
        """Take a connection slot, or refuse (`too_many_connections`)."""
        if self.connections >= self.max_connections:
            self.refused += 1
            raise Refusal(
                "too_many_connections",
                f"the server has {self.connections} Wyoming connections, its limit "
                "(server.wyoming_max_connections); try again later",
            )
        self.connections += 1
        self.accepted += 1

    def leave(self) -> None:
        self.connections -= 1
