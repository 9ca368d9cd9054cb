"""What a model's owner task reads from its inbox (see `owner.ModelOwner`).

Callers' commands carry the future the owner resolves. The owner's own start and stop
tasks report back with `Started` and `Stopped`, so their slow work never runs inside
the owner, and every state change still happens in one place.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from supervisor.config import ModelSpec
    from supervisor.models.snapshot import ModelSnapshot
    from supervisor.workers.process import WorkerProcess


#: What an Acquire is answered with: the worker, its generation, and its wind-down notice.
Grant = tuple["WorkerProcess", int, asyncio.Event]


@dataclass(slots=True)
class Acquire:
    reply: asyncio.Future[Grant]


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
class Status:
    """A snapshot taken by the owner itself, consistent with every command sent before it."""

    reply: asyncio.Future[ModelSnapshot]


@dataclass(slots=True)
class Close:
    reply: asyncio.Future[None]


@dataclass(slots=True)
class Respec:
    """A reload changed the model's keys (or brought back a model being retired).

    Answered at once with what happens: "applied" (no worker to replace, or only the
    supervisor's keys changed), "replacing" (the idle worker is being replaced now) or
    "replaced once idle" (requests in flight finish on the old worker first).
    """

    reply: asyncio.Future[str]
    spec: ModelSpec
    memory_estimate_mb: float


@dataclass(slots=True)
class Retire:
    """A reload removed the model: finish what was taken on, stop the worker, end the owner.

    Answered when the owner ends ("retired", or "shut down" when the server stopped first),
    or with "kept" when a later reload brought the model back first (`Respec`).
    """

    reply: asyncio.Future[str]


@dataclass(slots=True)
class Exited:
    """A worker process ended (reported by its exit watcher)."""

    worker: WorkerProcess


@dataclass(slots=True)
class Started:
    """The start task's outcome: a READY worker, or why there is none."""

    worker: WorkerProcess | None = None
    error: BaseException | None = None
    capacity_full: bool = False  # the error is a full server, not a load failure


@dataclass(slots=True)
class Stopped:
    """The stop task has reaped `worker` (and, on CUDA, seen its VRAM released).

    `worker` is None when a start was aborted before it had one to hand over.
    """

    worker: WorkerProcess | None
    how: str


Command = Acquire | Release | Load | Unload | Status | Close | Respec | Retire | Exited | Started | Stopped


def answer(future: asyncio.Future[Any], value: Any = None, *, error: BaseException | None = None) -> None:
    """Resolve a caller's reply, unless the caller has gone (a cancelled wait) or it was answered."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
