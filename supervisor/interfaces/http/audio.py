"""OpenAI-compatible `/v1/audio/transcriptions` and `/v1/audio/translations`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive

from common.protocol import TranscribeParams, TranscribeResult
from supervisor.failures import ServiceError
from supervisor.interfaces.http import formats
from supervisor.interfaces.http.auth import require_api_key
from supervisor.interfaces.http.errors import bad_request, from_service_error
from supervisor.interfaces.http.formats import ResponseFormat
from supervisor.interfaces.http.model_path import pinned_model
from supervisor.interfaces.http.schemas import TranscriptionJSON, VerboseTranscriptionJSON
from supervisor.service import Item, Transcription, TranscriptionService

log = logging.getLogger("asr.http")

router = APIRouter(dependencies=[Depends(require_api_key)])

#: What the routes answer: JSON for json/verbose_json, plain text for text/srt/vtt, SSE when streaming.
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": TranscriptionJSON | VerboseTranscriptionJSON,
        "content": {"text/plain": {}, "application/x-subrip": {}, "text/vtt": {}, "text/event-stream": {}},
    }
}


@router.post("/v1/audio/transcriptions", responses=_RESPONSES)
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
        language=language or None,
        prompt=prompt or None,
        temperature=temperature,
        beam_size=beam_size,
        vad_filter=vad_filter,
        word_timestamps="word" in granularities,
        hotwords=hotwords or None,
        task="transcribe",
        stream=stream,
    )
    return await _serve(request, file, model, params, response_format, granularities)


@router.post("/v1/audio/translations", responses=_RESPONSES)
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
    params = TranscribeParams(
        prompt=prompt or None, temperature=temperature, beam_size=beam_size, vad_filter=vad_filter, task="translate"
    )
    return await _serve(request, file, model, params, response_format, {"segment"})


async def _unless_client_leaves(receive: Receive, transcription: Transcription) -> Item | None:
    """The transcription's first item, or None if the client hangs up first.

    Then the wait is cancelled, which tells the worker to stop decoding (CANCEL) and gives
    the model back: a client that gave up on a long file must not keep the model busy for
    minutes. A streamed response is watched the same way by Starlette once it has begun.
    """

    async def first() -> Item:
        return await anext(transcription)

    job = asyncio.ensure_future(first())
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not job.done():
            job.cancel()
            await asyncio.wait({job})  # its cleanup (the CANCEL, the lease) runs before we go on
    return None if job.cancelled() else job.result()


async def _disconnected(receive: Receive) -> None:
    """Returns when the client closes the connection (the body has been read by now)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _granularities(values: list[str] | None) -> set[str]:
    chosen = set(values or ["segment"])
    if unknown := chosen - {"segment", "word"}:
        raise bad_request(
            f"Invalid timestamp granularity {min(unknown)!r}: use 'segment' and/or 'word'.",
            param="timestamp_granularities[]",
        )
    return chosen


async def _serve(
    request: Request,
    file: UploadFile,
    model: str | None,
    params: TranscribeParams,
    response_format: str,
    granularities: set[str],
) -> Response:
    service: TranscriptionService = request.app.state.service
    model = service.choose(pinned_model(request.scope), model)
    service.resolve(model)  # an unknown model is a 404 before the upload is read
    audio = await request.app.state.spool.hold(file)  # a large upload waits on disk (supervisor.uploads)
    if not audio:
        raise bad_request("The uploaded file is empty.", param="file", code="empty_file")

    transcription = service.stream(model, audio, params, interface="http")  # owns `audio` from here
    try:
        # Errors before the first byte become proper HTTP statuses.
        first = await _unless_client_leaves(request.receive, transcription)
    except BaseException:
        await transcription.aclose()
        raise
    if first is None:
        await transcription.aclose()
        log.info(
            "model=%s pid=%s the client went away: its transcription was cancelled",
            transcription.model,
            transcription.pid,
        )
        return Response(status_code=499)  # nobody reads it: the client closed the request
    headers = {
        "X-ASR-Model": transcription.model,
        "X-ASR-Worker-PID": str(transcription.pid),
        "X-Request-Id": transcription.id,  # the id of this request's log lines, the worker's included
    }
    if params.stream:
        timed = response_format in TIMED_FORMATS
        return StreamingResponse(
            _sse(first, transcription, timed),
            media_type="text/event-stream",
            headers=headers | {"Cache-Control": "no-cache"},
        )
    await transcription.aclose()  # releases the lease now, not whenever the generator is collected
    assert isinstance(first, TranscribeResult)
    return _render(first, params.task, response_format, granularities, headers)


#: Formats whose stream also carries each segment's times (`transcript.text.segment`).
TIMED_FORMATS = frozenset({"verbose_json", "srt", "vtt"})


async def _sse(first: Item, rest: Transcription, timed: bool = False) -> AsyncIterator[str]:
    """OpenAI's transcription stream: `transcript.text.delta` per segment, then `.done`.

    With `timed` (a stream asked for in a format that has times), each segment is first
    sent as a `transcript.text.segment` event, OpenAI's own for streamed segments (its
    diarized streams; `speaker` is empty here): subtitles can be made from one stream,
    without transcribing the file a second time for its timings.
    """
    sent: list[str] = []

    def event(item: Item) -> str:
        if isinstance(item, TranscribeResult):
            # The final text is exactly what the deltas added up to.
            return _event({"type": "transcript.text.done", "text": "".join(sent)})
        delta = item.text if sent else item.text.lstrip()
        sent.append(delta)
        text = _event({"type": "transcript.text.delta", "delta": delta})
        if not timed:
            return text
        segment = {
            "type": "transcript.text.segment",
            "id": f"seg_{item.id}",
            "start": item.start,
            "end": item.end,
            "text": item.text.strip(),
            "speaker": "",
        }
        return _event(segment) + text

    try:
        yield event(first)
        async for item in rest:
            yield event(item)
    except ServiceError as exc:
        error = from_service_error(exc)
        yield _event(
            {"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}}
        )
    finally:
        await rest.aclose()  # tells the worker to stop decoding if the client went away


def _event(data: dict[str, object]) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _render(
    result: TranscribeResult, task: str, response_format: str, granularities: set[str], headers: dict[str, str]
) -> Response:
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
