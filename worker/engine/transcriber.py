"""One loaded model's TRANSCRIBE requests: check, decode, run on a lane, answer.

Every request ends in exactly one answer, a Result or an Error for its id. Which code an
Error gets is decided here: the client's input (`bad_audio`, `bad_parameter`, and
`audio_too_long` for more than the model's `max_audio_seconds`) or our fault (`internal`).
Parameters arrive already type-checked by the codec, so an exception from the library
(a TypeError included) is a bug of ours, never the client's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

from common.protocol import (
    Error,
    ErrorCode,
    FromWorker,
    Payload,
    ReadyInfo,
    Result,
    Segment,
    SegmentDecoded,
    Transcribe,
    TranscribeParams,
    TranscribeResult,
)
from worker.audio import decode as audio
from worker.backends import Backend, OnSegment
from worker.engine.lanes import Lanes
from worker.engine.progress import Progress
from worker.engine.tally import Tally

log = logging.getLogger("worker")


class RequestError(Exception):
    """A request refused for a reason the client can act on."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class Transcriber:
    def __init__(
        self,
        backend: Backend,
        info: ReadyInfo,
        lanes: Lanes,
        post: Callable[[FromWorker], None],
        tally: Tally | None = None,
    ) -> None:
        """`lanes` are the worker's inference lanes, shared with live sessions. `post` queues
        a message for the supervisor; it is called on the event loop only. `tally` counts the
        lanes' time in the model, for the heartbeat."""
        self._backend = backend
        self._tally = tally or Tally()
        self._info = info
        self._post = post
        self._lanes = lanes
        self._active: set[str] = set()
        self._cancelled: set[str] = set()
        self.served = 0
        self.last_inference_at: float | None = None

    @property
    def in_flight(self) -> int:
        return len(self._active)

    def cancel(self, request_id: str) -> None:
        # Only a request still running is remembered: a CANCEL that crossed its RESULT on
        # the wire would otherwise stay in the set forever.
        if request_id in self._active:
            self._cancelled.add(request_id)

    async def answer(self, request: Transcribe, data: Payload) -> Result | Error:
        loop = asyncio.get_running_loop()
        request_id, params = request.id, request.params

        progress = Progress(request_id)

        def on_segment(segment: Segment) -> bool:  # runs in the inference thread
            progress.segment(segment.end)
            if params.stream:
                loop.call_soon_threadsafe(self._post, SegmentDecoded(id=request_id, segment=segment))
            return request_id not in self._cancelled

        self._active.add(request_id)
        # The supervisor's request line carries the same id: `grep ID` finds both sides.
        where = {"request_id": request_id}
        started = time.monotonic()
        try:
            source: Payload | Path = Path(request.audio_file) if request.audio_file else data
            result = await self._lanes.run(self._transcribe, source, params, on_segment, progress)
            log.debug(
                "request=%s decoded audio_s=%.2f in %.3f s",
                request_id,
                result.duration,
                time.monotonic() - started,
                extra=where,
            )
            return Result(id=request_id, result=result)
        except RequestError as exc:
            log.info("request=%s refused (%s): %s", request_id, exc.code, exc, extra=where)
            return Error(id=request_id, code=exc.code, message=str(exc))
        except Exception as exc:
            log.exception("request=%s transcription failed", request_id, extra=where)
            return Error(
                id=request_id, code=ErrorCode.INTERNAL, message=f"transcription failed: {type(exc).__name__}: {exc}"
            )
        finally:
            self._active.discard(request_id)
            self._cancelled.discard(request_id)
            self.served += 1

    def _transcribe(
        self, data: Payload | Path, params: TranscribeParams, on_segment: OnSegment, progress: Progress, lane: int
    ) -> TranscribeResult:
        if params.task == "translate" and not self._info.multilingual:
            raise RequestError(
                ErrorCode.BAD_PARAMETER,
                "this model is English-only and cannot translate; use a multilingual model",
            )
        if params.language and self._info.languages and params.language not in self._info.languages:
            raise RequestError(
                ErrorCode.BAD_PARAMETER,
                f"language {params.language!r} is not supported by this model; "
                f"supported: {', '.join(self._info.languages)}",
            )
        try:
            with audio.open_stream(data, params, self._backend.max_audio_seconds) as samples:
                progress.total = samples.declared_seconds
                try:
                    result = self._backend.transcribe(samples, params, on_segment, lane)
                finally:
                    self.last_inference_at = time.time()  # a float store: safe from this thread
        except audio.AudioError as exc:
            raise RequestError(ErrorCode.BAD_AUDIO, str(exc)) from exc
        except audio.AudioTooLong as exc:
            raise RequestError(ErrorCode.AUDIO_TOO_LONG, str(exc)) from exc
        self._tally.decoded(result.duration)
        return result
