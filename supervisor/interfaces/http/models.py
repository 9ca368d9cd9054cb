"""`/v1/models`: OpenAI's list format plus our fields."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from supervisor.interfaces.http.auth import require_api_key
from supervisor.interfaces.http.errors import api_error
from supervisor.interfaces.http.model_path import pinned_model
from supervisor.interfaces.http.schemas import ModelList, ModelObject
from supervisor.models import catalog
from supervisor.models import files as model_files
from supervisor.models.registry import ModelRegistry, UnknownModel

router = APIRouter(dependencies=[Depends(require_api_key)])


def _describe(registry: ModelRegistry, name: str) -> ModelObject:
    owner = registry.get(name)
    snapshot = owner.snapshot()
    path = model_files.installed_path(owner.spec)
    known = catalog.lookup(owner.spec.source, owner.spec.backend) or catalog.lookup(name, owner.spec.backend)
    return ModelObject(
        id=name,
        ready=snapshot.state == "ready",
        loaded=snapshot.state == "ready",
        state=snapshot.state,
        default=name == registry.default_model,
        backend=snapshot.backend,
        source=snapshot.source,
        description=snapshot.description,
        languages=snapshot.languages or model_files.languages_guess(owner.spec),
        installed=path is not None,
        approx_size_mb=known.size_mb if known else None,
        size=model_files.disk_size(path) if path else None,
        aliases=registry.aliases_of(name),
    )


@router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    registry: ModelRegistry = request.app.state.registry
    pinned = pinned_model(request.scope)  # under a model's base URL: that model
    try:
        names = registry.names() if pinned is None else [registry.resolve(pinned)]
    except UnknownModel as exc:
        raise api_error(exc) from None
    return ModelList(data=[_describe(registry, name) for name in names])


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(request: Request, model_id: str) -> ModelObject:
    """A configured model, or an alias of one (answered under the name asked for)."""
    registry: ModelRegistry = request.app.state.registry
    try:
        name = registry.resolve(model_id)
    except UnknownModel as exc:
        raise api_error(exc) from None
    return _describe(registry, name).model_copy(update={"id": model_id})
