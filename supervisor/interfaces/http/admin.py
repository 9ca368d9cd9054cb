"""Admin API: load and unload models by hand (what `asrctl models load|unload` calls),
switch the server-wide default model, and reload the configuration (`asrctl reload`).

Kept on the path `seeds/whisper-server-ttl.md` named, `POST /v1/model/unload?model=`,
with `load` beside it. The default-model switch is here too: it changes what every other
client gets, so with `admin_keys` set an ordinary API key may not do it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from supervisor.config import MAX_TTL
from supervisor.interfaces.http.auth import require_admin_key
from supervisor.interfaces.http.errors import APIError, api_error, bad_request
from supervisor.interfaces.http.schemas import DefaultModelChoice, LoadedModel, UnloadReport, UnloadResult
from supervisor.models import downloads
from supervisor.models.owner import ModelUnavailable
from supervisor.models.registry import ModelRegistry, UnknownModel
from supervisor.reload import Reloader, ReloadFailed, ReloadReport

router = APIRouter(dependencies=[Depends(require_admin_key)])


def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


@router.post("/v1/model/load")
async def load_model(
    request: Request,
    model: str = Query(..., description="model to load"),
    ttl: int | None = Query(None, ge=-1, le=MAX_TTL, description="a new TTL for this model, from now on"),
) -> LoadedModel:
    """Start the model's worker now and wait until it is ready."""
    registry = _registry(request)
    try:
        owner = registry.get(model)
        await owner.load(ttl)
    except (UnknownModel, ModelUnavailable) as exc:
        raise api_error(exc) from None
    return LoadedModel(model=owner.spec.name, **owner.snapshot().model_dump())


@router.post("/v1/model/download")
async def download_model(
    request: Request, model: str = Query(..., description="model to download")
) -> StreamingResponse:
    """Fetch the model's files into its cache, streaming progress as NDJSON lines.

    `model` is a configured model or any catalogue name (fetched as `--model NAME` would
    load it). Events: `{"event": "progress", "downloaded", "total"}` ..., then
    `{"event": "done", "path", "size", "cached", "configured"}` or `{"event": "error", "message"}`.
    """
    try:
        spec = downloads.spec_to_download(_registry(request), model)
    except UnknownModel as exc:
        raise api_error(exc) from None
    configured = spec.name in _registry(request).names()  # else a catalogue name, fetched for later

    async def lines() -> AsyncIterator[str]:
        async for event in downloads.download(spec):
            if event["event"] == "done":
                event["configured"] = configured
            yield json.dumps(event) + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/v1/model/unload")
async def unload_model(
    request: Request,
    model: str | None = Query(None, description="model to unload"),
    all: bool = Query(False, description="unload every model"),
) -> UnloadResult:
    """Stop the model's worker once its in-flight requests finish; report what was freed."""
    registry = _registry(request)
    if all == bool(model):
        raise bad_request("Name one model (?model=NAME) or ask for all (?all=true).", param="model")
    try:
        owners = [registry.get(name) for name in registry.names()] if all else [registry.get(model)]
    except UnknownModel as exc:
        raise api_error(exc) from None
    results = [UnloadReport(**r) for r in await asyncio.gather(*(owner.unload() for owner in owners))]
    return UnloadResult(
        unloaded=[r for r in results if r.ended_by != "not loaded"],
        freed_rss_mb=round(sum(r.freed_rss_mb or 0 for r in results), 1),
    )


class ModelChoice(BaseModel):
    model_id: str


@router.post("/v1/settings/model")
async def set_default_model(request: Request, choice: ModelChoice) -> DefaultModelChoice:
    """Make `model_id` the model used when a request names none (and what `whisper-1` means)."""
    try:
        name = _registry(request).set_default(choice.model_id)
    except UnknownModel as exc:
        raise api_error(exc) from None
    return DefaultModelChoice(model=name)


@router.post("/v1/admin/reload", responses={422: {"description": "the file is invalid: nothing was changed"}})
async def reload_config(request: Request) -> ReloadReport:
    """Read the configuration file again and apply it, as SIGHUP does (`systemctl reload`).

    An invalid file changes nothing: 422 with the reason, code `invalid_config`.
    """
    reloader: Reloader = request.app.state.reloader
    try:
        return await reloader.reload()
    except ReloadFailed as exc:
        raise APIError(422, f"the configuration was not reloaded: {exc}", code="invalid_config") from None
