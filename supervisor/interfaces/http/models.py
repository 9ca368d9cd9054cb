"""`/v1/models` (OpenAI's list format plus our fields) and the default-model switch."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from supervisor.models import catalog
from supervisor.models import files as model_files
from supervisor.interfaces.http.auth import require_api_key
from supervisor.interfaces.http.errors import from_worker_error
from supervisor.models.registry import ModelRegistry, UnknownModel

router = APIRouter(dependencies=[Depends(require_api_key)])


def _describe(registry: ModelRegistry, name: str) -> dict[str, Any]:
    slot = registry.get(name)
    state = slot.snapshot()
    path = model_files.installed_path(slot.spec)
    return {
        "id": name,
        "object": "model",
        "created": 0,
        "owned_by": "asr-supervisor",
        "ready": state["state"] == "ready",
        "loaded": state["state"] == "ready",
        "state": state["state"],
        "default": name == registry.default_model,
        "backend": slot.spec.backend,
        "source": slot.spec.source,
        "description": slot.spec.description,
        "languages": state["languages"] or model_files.languages_guess(slot.spec),
        "installed": path is not None,
        "approx_size_mb": known.size_mb if (known := catalog.lookup(slot.spec.source) or catalog.lookup(name)) else None,
        "size": model_files.disk_size(path) if path else None,
        "aliases": registry.aliases_of(name),
    }


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    registry: ModelRegistry = request.app.state.registry
    return {"object": "list", "data": [_describe(registry, name) for name in registry.names()]}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(request: Request, model_id: str) -> dict[str, Any]:
    registry: ModelRegistry = request.app.state.registry
    try:
        name = registry.resolve(model_id)
    except UnknownModel as exc:
        raise from_worker_error(exc) from None
    return _describe(registry, name) | {"id": model_id} if model_id != name else _describe(registry, name)


class ModelChoice(BaseModel):
    model_id: str


@router.post("/v1/settings/model")
async def set_default_model(request: Request, choice: ModelChoice) -> dict[str, str]:
    """Make `model_id` the model used when a request names none (and what `whisper-1` means)."""
    registry: ModelRegistry = request.app.state.registry
    try:
        name = registry.set_default(choice.model_id)
    except UnknownModel as exc:
        raise from_worker_error(exc) from None
    return {"status": "success", "model": name}
