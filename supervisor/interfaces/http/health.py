"""`GET /health` (each model's state), `/health/live` and `/health/ready` (for systemd, load
balancers and orchestrators); all three open even when API keys are set.

Ready means a request sent now would be served: the server listens and is not draining,
its configuration is the validated one it started with (a reload that fails keeps it), and
the default model is loadable: not `failed`, which includes backing off after a failed
load. A model still loading is ready: requests queue for it.
"""

from __future__ import annotations

import asyncio
import os
from typing import Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from supervisor.interfaces.http.schemas import CapacityInfo, Health
from supervisor.models.registry import ModelRegistry
from supervisor.workers import devices

router = APIRouter()

#: States in which a model holds a worker, and so counts against memory_budget_mb.
_HOLDING = ("starting", "ready", "stopping")


@router.get("/health")
async def health(request: Request) -> Health:
    """The sidecar contract (`status`, `current_model`, `device`) plus every model's detail."""
    registry: ModelRegistry = request.app.state.registry
    models = registry.snapshot(retiring=True)
    if any(m.device == "cuda" for m in models.values()):
        vram = await asyncio.to_thread(devices.cuda_memory_by_pid) or {}
        models = {
            name: m.model_copy(update={"vram_mb": vram.get(m.pid) if m.pid else None}) if m.device == "cuda" else m
            for name, m in models.items()
        }
    loaded = {name: m for name, m in models.items() if m.state == "ready"}
    # The most recently used loaded model; with none loaded, the one requests go to.
    serving = [name for name in loaded if not loaded[name].retiring]
    current = max(serving, key=lambda n: loaded[n].last_used or 0, default=None)
    return Health(
        default_model=registry.default_model,
        current_model=current or registry.default_model,
        device=loaded[current].device if current else None,
        devices=await asyncio.to_thread(devices.detect),
        spare_pid=registry.spares.pid,
        spare_pids=registry.spares.pids,
        capacity=CapacityInfo(
            max_loaded_models=registry.capacity.limits.max_loaded_models,
            memory_budget_mb=registry.capacity.limits.memory_budget_mb,
            loaded=sorted(loaded),
            memory_mb=round(sum(m.memory_mb for m in models.values() if m.state in _HOLDING), 1),
        ),
        models=models,
    )


class Liveness(BaseModel):
    status: Literal["alive"] = "alive"
    pid: int


class ReadyChecks(BaseModel):
    listening: bool = Field(description="HTTP listens and the server is not draining for a stop")
    config: Literal["valid"] = Field(description="the configuration in force passed validation")
    default_model: str
    default_model_state: str


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    reason: str | None = Field(None, description="why not ready")
    checks: ReadyChecks


@router.get("/health/live")
async def live() -> Liveness:
    """The process is up and its event loop answers; nothing else is checked."""
    return Liveness(pid=os.getpid())


@router.get("/health/ready", responses={503: {"model": Readiness, "description": "not ready; `reason` says why"}})
async def ready(request: Request) -> JSONResponse:
    """200 when a request sent now would be served, else 503 with the reason."""
    body = readiness(request.app)
    return JSONResponse(body.model_dump(), status_code=503 if body.reason else 200)


def readiness(app: FastAPI) -> Readiness:
    """Whether a request sent now would be served, and if not why (also the `asr_ready` metric)."""
    registry: ModelRegistry = app.state.registry
    name = registry.default_model
    model = registry.get(name).snapshot()
    checks = ReadyChecks(
        listening=bool(getattr(app.state, "accepting", False)),
        config="valid",
        default_model=name,
        default_model_state=model.state,
    )
    reason = None
    if not checks.listening:
        reason = "the server is stopping"
    elif model.state == "failed":
        reason = f"the default model {name} failed to load: {model.last_error or 'no reason given'}"
        if model.retry_in:
            reason += f" (next try in {model.retry_in:.0f} s)"
    return Readiness(status="not_ready" if reason else "ready", reason=reason, checks=checks)
