"""The commands a model's owner task accepts in its inbox (see `lifecycle.ModelSlot`).

Each command that expects an answer carries the future the owner resolves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.workers.process import WorkerProcess


@dataclass(slots=True)
class Acquire:
    reply: asyncio.Future[tuple[WorkerProcess, int]]


@dataclass(slots=True)
class Release:
    generation: int


@dataclass(slots=True)
class Load:
    reply: asyncio.Future[None]
    ttl: int | None = None  # a new TTL for this model, from now on


@dataclass(slots=True)
class Unload:
    reply: asyncio.Future[str]
    reason: str = "unload"


@dataclass(slots=True)
class Exited:
    worker: WorkerProcess


@dataclass(slots=True)
class Close:
    reply: asyncio.Future[None]


Command = Acquire | Release | Load | Unload | Exited | Close
