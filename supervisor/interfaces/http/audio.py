"""OpenAI-compatible `/v1/audio/transcriptions` and `/v1/audio/translations`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from supervisor.interfaces.http import formats
from supervisor.interfaces.http.auth import require_api_key
from supervisor.interfaces.http.errors import bad_request, from_worker_error
from supervisor.interfaces.http.formats import ResponseFormat
from supervisor.models.owner import ModelSlot, ModelUnavailable
from supervisor.models.registry import ModelRegistry, UnknownModel
from supervisor.workers.process import WorkerError
from worker.protocol import Segment, TranscribeParams, TranscribeResult

router = APIRouter(dependencies=[Depends(require_api_key)])

_Item = tuple[Segment | TranscribeResult, int]


@router.post("/v1/audio/transcriptions")
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File(description="audio in any format FFmpeg decodes")],
    model: Annotated[str | None, Form()] = None,
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[ResponseFormat, Form()] = "json",
    temperature: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
    timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
    stream: Annotated[bool, Form()] = False,
    vad_filter: Annotated[bool, Form()] = False,
    beam_size: Annotated[int | None, Form(ge=1, le=20)] = None,
    hotwords: Annotated[str | None, Form()] = None,
) -> Response:
    granularities = _granularities(timestamp_granularities)
    params = TranscribeParams(
        language=language or None, prompt=prompt or None, temperature=temperature, beam_size=beam_size,
        vad_filter=vad_filter, word_timestamps="word" in granularities, hotwords=hotwords or None,
        task="transcribe", stream=stream,
    )
    return await _serve(request, file, model, params, response_format, granularities)


@router.post("/v1/audio/translations")
async def translations(
    request: Request,
    file: Annotated[UploadFile, File(description="audio in any format FFmpeg decodes")],
    model: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[ResponseFormat, Form()] = "json",
    temperature: Annotated[float | None, Form(ge=0.0, le=1.0)] = None,
    vad_filter: Annotated[bool, Form()] = False,
    beam_size: Annotated[int | None, Form(ge=1, le=20)] = None,
) -> Response:
    params = TranscribeParams(prompt=prompt or None, temperature=temperature, beam_size=beam_size,
                              vad_filter=vad_filter, task="translate")
    return await _serve(request, file, model, params, response_format, {"segment"})


def _granularities(values: list[str] | None) -> set[str]:
    chosen = set(values or ["segment"])
    if unknown := chosen - {"segment", "word"}:
        raise bad_request(f"Invalid timestamp granularity {sorted(unknown)[0]!r}: use 'segment' and/or 'word'.",
                          param="timestamp_granularities[]")
    return chosen


async def _serve(
    request: Request,
    file: UploadFile,
    model: str | None,
    params: TranscribeParams,
    response_format: str,
    granularities: set[str],
) -> Response:
    registry: ModelRegistry = request.app.state.registry
    try:
        slot = registry.get(model)
    except UnknownModel as exc:
        raise from_worker_error(exc) from None
    audio = await file.read()
    if not audio:
        raise bad_request("The uploaded file is empty.", param="file", code="empty_file")

    items = _run(slot, audio, params)
    first = await _first(items)  # errors before the first byte become proper HTTP statuses
    headers = {"X-ASR-Model": slot.spec.name, "X-ASR-Worker-PID": str(first[1])}
    if params.stream:
        return StreamingResponse(_sse(first, items), media_type="text/event-stream",
                                 headers=headers | {"Cache-Control": "no-cache"})
    await items.aclose()  # releases the lease now, not whenever the generator is collected
    result = first[0]
    assert isinstance(result, TranscribeResult)
    return _render(result, params.task, response_format, granularities, headers)


async def _run(slot: ModelSlot, audio: bytes, params: TranscribeParams) -> AsyncIterator[_Item]:
    """Segments (when streaming) then the result, each with the PID that made it.

    The lease is held for as long as this generator runs, so a streaming response keeps
    its model busy (safe from the TTL) until the last event is sent.
    """
    async with slot.lease() as worker, contextlib.aclosing(worker.stream(audio, params)) as items:
        async for item in items:
            yield item, worker.pid


async def _first(items: AsyncIterator[_Item]) -> _Item:
    try:
        return await anext(items)
    except (WorkerError, ModelUnavailable) as exc:
        raise from_worker_error(exc) from None


async def _sse(first: _Item, rest: AsyncIterator[_Item]) -> AsyncIterator[str]:
    """OpenAI's transcription stream: `transcript.text.delta` per segment, then `.done`."""
    sent: list[str] = []

    def event(item: Segment | TranscribeResult) -> str:
        if isinstance(item, TranscribeResult):
            # The final text is exactly what the deltas added up to.
            return _event({"type": "transcript.text.done", "text": "".join(sent)})
        delta = item.text if sent else item.text.lstrip()
        sent.append(delta)
        return _event({"type": "transcript.text.delta", "delta": delta})

    try:
        yield event(first[0])
        async for item, _pid in rest:
            yield event(item)
    except (WorkerError, ModelUnavailable) as exc:
        error = from_worker_error(exc)
        yield _event({"error": {"message": error.message, "type": error.type, "param": error.param,
                                "code": error.code}})
    finally:
        await rest.aclose()  # tells the worker to stop decoding if the client went away


def _event(data: dict[str, object]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _render(result: TranscribeResult, task: str, response_format: str, granularities: set[str],
            headers: dict[str, str]) -> Response:
    media_type = formats.MEDIA_TYPES[response_format]
    if response_format == "json":
        return JSONResponse({"text": result.text}, headers=headers)
    if response_format == "verbose_json":
        body = formats.verbose_json(result, task, "segment" in granularities, "word" in granularities)
        return JSONResponse(body, headers=headers)
    if response_format == "srt":
        return Response(formats.srt(result.segments), media_type=media_type, headers=headers)
    if response_format == "vtt":
        return Response(formats.vtt(result.segments), media_type=media_type, headers=headers)
    return Response(result.text + "\n", media_type=media_type, headers=headers)

