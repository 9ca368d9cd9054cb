"""HTTP routes: OpenAI-compatible transcription and the health report."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from supervisor.errors import bad_request, from_worker_error
from supervisor.lifecycle import ModelSlot, ModelUnavailable
from supervisor.registry import ModelRegistry, UnknownModel
from supervisor.worker_client import WorkerError
from worker.protocol import TranscribeParams, TranscribeResult

router = APIRouter()

ResponseFormat = Literal["json", "text"]


def _registry(request: Request) -> ModelRegistry:
    return request.app.state.registry


@router.post("/v1/audio/transcriptions")
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File(description="audio in any format FFmpeg decodes")],
    model: Annotated[str | None, Form()] = None,
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[ResponseFormat, Form()] = "json",
    temperature: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
) -> Response:
    registry = _registry(request)
    try:
        slot = registry.get(model)
    except UnknownModel as exc:
        raise from_worker_error(exc) from None
    audio = await file.read()
    if not audio:
        raise bad_request("The uploaded file is empty.", param="file", code="empty_file")
    params = TranscribeParams(language=language or None, prompt=prompt or None, temperature=temperature)
    result, pid = await _transcribe(slot, audio, params)
    # Which model and process answered: lets operators tie a response to a worker's logs.
    headers = {"X-ASR-Model": slot.spec.name, "X-ASR-Worker-PID": str(pid)}
    if response_format == "text":
        return PlainTextResponse(result.text + "\n", headers=headers)
    return JSONResponse({"text": result.text}, headers=headers)


async def _transcribe(slot: ModelSlot, audio: bytes, params: TranscribeParams) -> tuple[TranscribeResult, int]:
    try:
        async with slot.lease() as worker:
            return await worker.transcribe(audio, params), worker.pid
    except (WorkerError, ModelUnavailable) as exc:
        raise from_worker_error(exc) from None


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    """Liveness plus the per-model picture: state, PID, device, TTL remaining."""
    registry = _registry(request)
    models = registry.snapshot()
    loaded = {name: m for name, m in models.items() if m["state"] == "ready"}
    current = max(loaded, key=lambda n: loaded[n]["last_used"] or 0, default=None)
    return {
        "status": "healthy",
        "default_model": registry.default_model,
        "current_model": current,
        "device": loaded[current]["device"] if current else None,
        "models": models,
    }

