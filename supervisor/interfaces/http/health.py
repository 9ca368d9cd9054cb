"""`GET /health`: liveness plus each model's state; open even when API keys are set."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from supervisor.workers import devices
from supervisor.models.registry import ModelRegistry

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    """The sidecar contract (`status`, `current_model`, `device`) plus every model's detail."""
    registry: ModelRegistry = request.app.state.registry
    models = registry.snapshot()
    if any(m["device"] == "cuda" for m in models.values()):
        vram = await asyncio.to_thread(devices.cuda_memory_by_pid) or {}
        for m in models.values():
            m["vram_mb"] = vram.get(m["pid"]) if m["device"] == "cuda" else None
    loaded = {name: m for name, m in models.items() if m["state"] == "ready"}
    # The most recently used loaded model; with none loaded, the one requests go to.
    current = max(loaded, key=lambda n: loaded[n]["last_used"] or 0, default=None)
    return {
        "status": "healthy",
        "default_model": registry.default_model,
        "current_model": current or registry.default_model,
        "device": loaded[current]["device"] if current else None,
        "devices": await asyncio.to_thread(devices.detect),
        "spare_pid": registry.spares.pid,
        "capacity": {
            "max_loaded_models": registry.capacity.limits.max_loaded_models,
            "memory_budget_mb": registry.capacity.limits.memory_budget_mb,
            "loaded": sorted(loaded),
        },
        "models": models,
    }
