"""The one path from an interface to a model: pick it, lease its worker, stream, classify failures.

HTTP, Wyoming and the coming live WebSocket/Realtime handlers call this and only translate
what it yields or raises into their own wire format. So the loop "resolve the model name,
lease a worker, stream its output, release the lease, say what went wrong" exists once,
and so does the judgement of whose fault a failure is (`ServiceError.kind`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from supervisor.failures import FailureKind, ServiceError, classify
from supervisor.live import LiveStream
from supervisor.models.owner import ModelOwner, ModelUnavailable
from supervisor.models.registry import ModelRegistry, UnknownModel
from supervisor.workers.process import WorkerError
from worker.backends import describe
from worker.protocol import Segment, TranscribeParams, TranscribeResult
from worker.protocol.live import LiveParams

Item = Segment | TranscribeResult


class Transcription:
    """One request's output: segments (when `params.stream`), then the result.

    The model's lease is held while this is being iterated, so a streaming client keeps
    its model busy (safe from the TTL) until its last event; `aclose()` (or leaving an
    `aclosing` block) releases it at once and tells the worker to stop decoding.
    Failures surface as `ServiceError`.
    """

    def __init__(self, owner: ModelOwner, audio: bytes, params: TranscribeParams) -> None:
        self.model = owner.spec.name
        self.pid: int | None = None  # the worker's, once leased
        self._items = self._run(owner, audio, params)

    def __aiter__(self) -> Transcription:
        return self

    async def __anext__(self) -> Item:
        try:
            return await anext(self._items)
        except (WorkerError, ModelUnavailable) as exc:
            raise classify(exc) from None

    async def result(self) -> TranscribeResult:
        """Consume the rest and return the final result."""
        async for item in self:
            if isinstance(item, TranscribeResult):
                return item
        raise ServiceError(FailureKind.INTERNAL, "the worker sent no result", "transcription_failed")

    async def aclose(self) -> None:
        await self._items.aclose()

    async def _run(self, owner: ModelOwner, audio: bytes, params: TranscribeParams) -> AsyncGenerator[Item, None]:
        async with owner.lease() as lease, contextlib.aclosing(lease.worker.stream(audio, params)) as items:
            self.pid = lease.worker.pid
            async for item in items:
                yield item


@dataclass(frozen=True, slots=True)
class Transcribed:
    result: TranscribeResult
    model: str
    pid: int | None


class TranscriptionService:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._live: set[LiveStream] = set()  # open live streams, over every interface
        self._max_live_sessions = registry.settings.server.max_live_sessions
        self._none_live = asyncio.Event()
        self._none_live.set()

    @property
    def live_sessions(self) -> int:
        return len(self._live)

    def resolve(self, model: str | None) -> str:
        """The configured model a client's name means; ServiceError(unknown_model) if none."""
        try:
            return self.registry.resolve(model)
        except UnknownModel as exc:
            raise classify(exc) from None

    def knows(self, model: str | None) -> bool:
        return self.registry.knows(model)

    def stream(self, model: str | None, audio: bytes, params: TranscribeParams) -> Transcription:
        """Start a transcription of `audio`; iterate it (in an `aclosing` block) for its output."""
        owner = self.registry.get(self.resolve(model))
        _check_capabilities(owner.spec.backend, params)
        return Transcription(owner, audio, params)

    def live(self, model: str | None, params: LiveParams) -> LiveStream:
        """A live stream on `model` (use it as an async context manager: that leases the model)."""
        owner = self.registry.get(self.resolve(model))
        if not describe(owner.spec.backend).capabilities.streaming:
            raise ServiceError(
                FailureKind.BAD_PARAMETER,
                f"models of the {owner.spec.backend} backend cannot stream",
                "invalid_parameter",
                param="model",
            )
        if self.live_sessions >= self._max_live_sessions:
            raise ServiceError(
                FailureKind.UNAVAILABLE,
                f"the server has {self.live_sessions} live sessions, its "
                "limit (server.max_live_sessions); try again later",
                "too_many_sessions",
                retry_after=5.0,
            )
        stream = LiveStream(
            owner, params, on_close=self._live_ended, drain_seconds=self.registry.settings.server.session_drain_timeout
        )
        self._live.add(stream)
        self._none_live.clear()
        return stream

    async def wind_down_live(self, timeout: float) -> None:
        """Shutdown's first phase: ask every live stream to finish (each gets its drain time and
        a final), and wait up to `timeout` seconds for them to end."""
        for stream in self._live:
            stream.wind_down.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._none_live.wait(), timeout)

    def _live_ended(self, stream: LiveStream) -> None:
        self._live.discard(stream)
        if not self._live:
            self._none_live.set()

    async def transcribe(self, model: str | None, audio: bytes, params: TranscribeParams) -> Transcribed:
        async with contextlib.aclosing(self.stream(model, audio, params)) as transcription:
            result = await transcription.result()
            return Transcribed(result, transcription.model, transcription.pid)


def _check_capabilities(backend: str, params: TranscribeParams) -> None:
    """Refuse what the model's backend cannot do before a worker is started for it."""
    can = describe(backend).capabilities
    if params.task == "translate" and not can.translate:
        raise ServiceError(
            FailureKind.BAD_PARAMETER, f"models of the {backend} backend cannot translate", "invalid_parameter"
        )
    if params.word_timestamps and not can.word_timestamps:
        raise ServiceError(
            FailureKind.BAD_PARAMETER,
            f"models of the {backend} backend give no word timestamps",
            "invalid_parameter",
            param="timestamp_granularities[]",
        )
