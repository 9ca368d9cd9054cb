"""`GET /health`: liveness plus each model's state; open even when API keys are set."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

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
    models = registry.snapshot()
    if any(m.device == "cuda" for m in models.values()):
        vram = await asyncio.to_thread(devices.cuda_memory_by_pid) or {}
        models = {
            name: m.model_copy(update={"vram_mb": vram.get(m.pid) if m.pid else None}) if m.device == "cuda" else m
            for name, m in models.items()
        }
    loaded = {name: m for name, m in models.items() if m.state == "ready"}
    # The most recently used loaded model; with none loaded, the one requests go to.
    current = max(loaded, key=lambda n: loaded[n].last_used or 0, default=None)
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
