"""One live stream on a model, as the interfaces see it (WebSocket, Wyoming)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Self

from supervisor.failures import classify
from supervisor.models.owner import ModelOwner, ModelUnavailable
from supervisor.workers.process import WorkerError, WorkerProcess
from supervisor.workers.session import WorkerSession
from worker.protocol.live import LiveEvent, LiveParams


class LiveStream:
    """One live stream on a model, from its first frame to its last final.

    It holds the model's lease for its whole life, so the TTL cannot end a worker under
    someone who is speaking. When the worker is wanted back (unload, eviction, shutdown),
    `wind_down` is set: the interface gives the speaker `session_drain_timeout` seconds,
    then calls `finish()` for a final of what was heard and ends the stream. Parameters may
    change (`configure`) until the first audio, because the worker's session opens then.
    Failures surface as `ServiceError`.
    """

    def __init__(
        self,
        owner: ModelOwner,
        params: LiveParams,
        on_close: Callable[[LiveStream], None] | None = None,
        drain_seconds: float = 0.0,
    ) -> None:
        self.model = owner.spec.name
        self.params = params
        self.pid: int | None = None
        self.wind_down = asyncio.Event()  # replaced by the lease's own notice on open()
        self._owner = owner
        self._stack = contextlib.AsyncExitStack()
        self._worker: WorkerProcess | None = None
        self._session: WorkerSession | None = None
        self._session_open = asyncio.Event()  # events are read only once the first audio opened it
        self._on_close = on_close
        self._drain_seconds = drain_seconds

    async def open(self) -> None:
        """Lease the model (starting its worker if need be)."""
        try:
            lease = await self._stack.enter_async_context(self._owner.lease())
        except ModelUnavailable as exc:
            raise classify(exc) from None
        self._worker, self.pid, self.wind_down = lease.worker, lease.worker.pid, lease.wind_down

    async def wanted_back(self) -> None:
        """Return once the model is wanted back (unload, eviction, shutdown) and the speaker has
        had its `session_drain_timeout` seconds: the interface then finishes the stream."""
        await self.wind_down.wait()
        await asyncio.sleep(self._drain_seconds)

    def configure(self, params: LiveParams) -> bool:
        """New parameters, if the worker's session has not opened yet; False if too late."""
        if self._session is not None:
            return False
        self.params = params
        return True

    async def send_audio(self, pcm: bytes) -> None:
        await _guarded((await self._opened()).send_audio(pcm))

    async def commit(self) -> None:
        await _guarded((await self._opened()).commit())

    async def finish(self) -> None:
        """No more audio: the remaining final(s) come, then the events end."""
        await _guarded((await self._opened()).close())

    def __aiter__(self) -> LiveStream:
        return self

    async def __anext__(self) -> LiveEvent:
        await self._session_open.wait()
        assert self._session is not None
        try:
            return await anext(self._session)
        except WorkerError as exc:
            raise classify(exc) from None

    async def aclose(self) -> None:
        """Drop the stream (abort the worker's session if it is still on) and give the lease back."""
        try:
            if self._session is not None:
                await self._session.aclose()
            await self._stack.aclose()
        finally:
            if self._on_close is not None:
                on_close, self._on_close = self._on_close, None
                on_close(self)

    async def __aenter__(self) -> Self:
        try:
            await self.open()
        except BaseException:
            await self.aclose()  # `async with` calls no __aexit__ when __aenter__ fails
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _opened(self) -> WorkerSession:
        if self._session is None:
            assert self._worker is not None, "open() first"
            try:
                self._session = await self._worker.open_session(self.params)
            except WorkerError as exc:
                raise classify(exc) from None
            self._session_open.set()
        return self._session


async def _guarded(call: Awaitable[None]) -> None:
    try:
        await call
    except WorkerError as exc:
        raise classify(exc) from None
