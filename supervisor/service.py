"""The one path from an interface to a model: pick it, lease its worker, stream, classify failures.

HTTP, Wyoming, the live WebSocket and Realtime call this and only translate what it yields
or raises into their own wire format. So the loop "resolve the model name,
lease a worker, stream its output, release the lease, say what went wrong" exists once,
and so does the judgement of whose fault a failure is (`ServiceError.kind`).

Because every request passes here, this is also where each one is observed, once: when it
ends, a `RequestFinished` record goes to `service.observers` (see `supervisor.observe`;
the metrics are one observer).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path

from common.backends import describe
from common.protocol import Segment, TranscribeParams, TranscribeResult
from common.protocol.live import LiveParams
from supervisor import uploads
from supervisor.config import OPENAI_ALIAS
from supervisor.failures import FailureKind, ServiceError, classify
from supervisor.live_stream import LiveStream
from supervisor.models.owner import ModelOwner, ModelUnavailable
from supervisor.models.registry import ModelRegistry, UnknownModel
from supervisor.observe import Interface, Observers, RequestFinished
from supervisor.workers.process import WorkerError

Item = Segment | TranscribeResult


class Transcription:
    """One request's output: segments (when `params.stream`), then the result.

    The model's lease is held while this is being iterated, so a streaming client keeps
    its model busy (safe from the TTL) until its last event; `aclose()` (or leaving an
    `aclosing` block) releases it at once and tells the worker to stop decoding.
    Failures surface as `ServiceError`. Its `RequestFinished` record is made when it is
    closed (every interface closes it: `aclosing`), or at its failure.
    """

    def __init__(
        self,
        owner: ModelOwner,
        audio: bytes | Path,
        params: TranscribeParams,
        interface: Interface,
        on_end: Callable[[Transcription, RequestFinished], None],
    ) -> None:
        self.model = owner.spec.name
        self.pid: int | None = None  # the worker's, once leased
        self.id = uuid.uuid4().hex  # the worker's request id too
        self.interface: Interface = interface
        self._on_end: Callable[[Transcription, RequestFinished], None] | None = on_end
        self._arrived = time.monotonic()
        self._leased: float | None = None
        self._answered: float | None = None
        self._result: TranscribeResult | None = None
        self._failure: ServiceError | None = None
        self._audio = audio
        self._items = self._run(owner, audio, params)

    def __aiter__(self) -> Transcription:
        return self

    async def __anext__(self) -> Item:
        try:
            item = await anext(self._items)
        except (WorkerError, ModelUnavailable) as exc:
            self._failure = classify(exc)
            self._end()
            raise self._failure from None
        if isinstance(item, TranscribeResult):
            self._result, self._answered = item, time.monotonic()
        return item

    async def result(self) -> TranscribeResult:
        """Consume the rest and return the final result."""
        async for item in self:
            if isinstance(item, TranscribeResult):
                return item
        raise ServiceError(FailureKind.INTERNAL, "the worker sent no result", "transcription_failed")

    async def aclose(self) -> None:
        try:
            await self._items.aclose()
        finally:
            self._end()

    async def _run(
        self, owner: ModelOwner, audio: bytes | Path, params: TranscribeParams
    ) -> AsyncGenerator[Item, None]:
        async with owner.lease() as lease:
            self.pid, self._leased = lease.worker.pid, time.monotonic()
            async with contextlib.aclosing(lease.worker.stream(audio, params, request_id=self.id)) as items:
                async for item in items:
                    yield item

    def _end(self) -> None:
        """Tell the service how it went, once."""
        if self._on_end is None:
            return
        on_end, self._on_end = self._on_end, None
        uploads.discard(self._audio)  # a spooled upload is the transcription's to remove
        now = time.monotonic()
        result, failure, leased = self._result, self._failure, self._leased
        answered = self._answered or now
        on_end(
            self,
            RequestFinished(
                request_id=self.id,
                interface=self.interface,
                mode="file",
                model=self.model,
                pid=self.pid,
                status="ok" if result else failure.kind.value if failure else "cancelled",
                code=failure.code if failure else None,
                audio_seconds=result.duration if result else None,
                wait_seconds=None if leased is None else leased - self._arrived,
                decode_seconds=answered - leased if result and leased is not None else None,
                total_seconds=answered - self._arrived,
            ),
        )


@dataclass(frozen=True, slots=True)
class Transcribed:
    result: TranscribeResult
    model: str
    pid: int | None


class TranscriptionService:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.observers = Observers()  # told of every request once it ends
        #: File requests under way, by (model, interface): the metrics' active requests.
        self.active: Counter[tuple[str, Interface]] = Counter()
        #: Open live streams, over every interface: their interface, id and arrival.
        self._live: dict[LiveStream, tuple[Interface, str, float]] = {}
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

    def choose(self, pinned: str | None, named: str | None) -> str | None:
        """The model a request means when its base URL pins one (`/models/{pinned}/v1/...`)
        and its body or query may name one too: the pinned model, whose name must be known;
        a name that means the same model (an alias, or `whisper-1`) is fine, and a different
        configured model is a mistake worth a 400 (`model_mismatch`), not a silent pick.
        Without a pinned model, the named one (None: the default)."""
        if pinned is None:
            return named
        model = self.resolve(pinned)
        if named and named != OPENAI_ALIAS and self.resolve(named) != model:
            raise ServiceError(
                FailureKind.BAD_PARAMETER,
                f"this base URL serves model {model!r}, but the request names {named!r} "
                f"(send {model!r}, an alias of it, or no model)",
                "model_mismatch",
                param="model",
            )
        return model

    def live_streams(self) -> Counter[tuple[str, Interface]]:
        """Live streams open now, by (model, interface)."""
        return Counter((stream.model, interface) for stream, (interface, _, _) in self._live.items())

    def stream(
        self, model: str | None, audio: bytes | Path, params: TranscribeParams, *, interface: Interface
    ) -> Transcription:
        """Start a transcription of `audio`; iterate it (in an `aclosing` block) for its output.

        `audio` is the bytes, or a spooled upload's path (supervisor.uploads), which the
        transcription removes when it ends, and this call when it refuses.
        """
        try:
            owner = self.registry.get(self.resolve(model))
            _check_capabilities(owner.spec.backend, params)
        except BaseException:
            uploads.discard(audio)
            raise
        transcription = Transcription(owner, audio, params, interface, self._transcription_ended)
        self.active[transcription.model, interface] += 1
        return transcription

    def _transcription_ended(self, transcription: Transcription, record: RequestFinished) -> None:
        self.active[transcription.model, transcription.interface] -= 1
        self.observers.finished(record)

    def live(self, model: str | None, params: LiveParams, *, interface: Interface) -> LiveStream:
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
        self._live[stream] = (interface, uuid.uuid4().hex, time.monotonic())
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
        interface, request_id, arrived = self._live.pop(stream)
        if not self._live:
            self._none_live.set()
        failure = stream.failure
        self.observers.finished(
            RequestFinished(
                request_id=request_id,
                interface=interface,
                mode="live",
                model=stream.model,
                pid=stream.pid,
                status=failure.kind.value if failure else "ok",
                code=failure.code if failure else None,
                audio_seconds=stream.audio_seconds,
                wait_seconds=None if stream.leased_at is None else stream.leased_at - arrived,
                decode_seconds=None,
                total_seconds=time.monotonic() - arrived,
            )
        )

    async def transcribe(
        self, model: str | None, audio: bytes, params: TranscribeParams, *, interface: Interface
    ) -> Transcribed:
        async with contextlib.aclosing(self.stream(model, audio, params, interface=interface)) as transcription:
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
