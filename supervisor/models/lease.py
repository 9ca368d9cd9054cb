"""What a caller of a model's owner gets back: a lease on a ready worker, or why not."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from supervisor.workers.process import WorkerProcess


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
