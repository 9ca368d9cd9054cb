"""The slow work of a model's owner, run as tasks of their own that report to its inbox.

Starting (capacity, spawn, LOAD, READY) and stopping (SHUTDOWN → SIGTERM → SIGKILL, VRAM
release) can take minutes; the owner must keep answering meanwhile (an unload mid-start,
a shutdown mid-load), so it never awaits them: it starts one of these and reads their
outcome (`Started`, `Stopped`) from its inbox like any command.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from supervisor.config import ModelSpec
from supervisor.models.capacity import CapacityFull, Gate, Tenant
from supervisor.models.commands import Command, Started, Stopped
from supervisor.workers import devices
from supervisor.workers.process import WorkerError, WorkerProcess

log = logging.getLogger("asr.lifecycle")

#: Starts a worker for a spec and returns it READY; calls the callback when it exits.
#: If cancelled, it stops and reaps whatever it had started before re-raising.
Launcher = Callable[[ModelSpec, Callable[[WorkerProcess], None]], Awaitable[WorkerProcess]]


async def start(
    spec: ModelSpec,
    tenant: Tenant,
    gate: Gate,
    launch: Launcher,
    on_exit: Callable[[WorkerProcess], None],
    inbox: asyncio.Queue[Command],
) -> None:
    """Reserve capacity for the tenant (the owner), then launch; the outcome goes to `inbox`."""
    outcome = Started()
    try:
        await gate.reserve(tenant)
        try:
            outcome.worker = await launch(spec, on_exit)
        except BaseException:
            gate.release(tenant)
            raise
    except asyncio.CancelledError:
        pass  # aborted by the owner: the launcher has stopped and reaped what it started
    except CapacityFull as exc:
        outcome.error, outcome.capacity_full = exc, True
    except Exception as exc:  # a failed load, whatever raised it: the owner must hear of it
        if not isinstance(exc, (WorkerError, OSError)):
            log.exception("model=%s unexpected error while starting its worker", spec.name)
        outcome.error = exc
    finally:
        inbox.put_nowait(outcome)


async def stop(worker: WorkerProcess, inbox: asyncio.Queue[Command]) -> None:
    """Stop and reap `worker`; on CUDA, wait until its VRAM is seen released."""
    how = "stop failed"
    try:
        how = await worker.stop()
        if worker.info is not None and worker.info.device == "cuda":
            await devices.wait_vram_released(worker.pid, timeout=10.0)
    finally:
        inbox.put_nowait(Stopped(worker, how))
