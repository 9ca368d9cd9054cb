"""The Wyoming listener (TCP or unix://): one `WyomingHandler` per connection."""

from __future__ import annotations

import logging
from functools import partial

from wyoming.server import AsyncServer

from supervisor.config import ServerTable, wyoming_uri
from supervisor.interfaces.wyoming.handler import WyomingHandler
from supervisor.service import TranscriptionService

log = logging.getLogger("asr.wyoming")


class WyomingService:
    """Started and stopped by the app's lifespan."""

    def __init__(self, server: ServerTable, service: TranscriptionService) -> None:
        self.uri = wyoming_uri(server)
        self._server = AsyncServer.from_uri(self.uri)
        max_audio_bytes = int(server.max_upload_mb * 1_000_000)
        self._factory = partial(WyomingHandler, service, max_audio_bytes, server.wyoming_idle_timeout)

    async def start(self) -> None:
        await self._server.start(self._factory)
        log.info("wyoming listening on %s", self.uri)

    async def stop(self) -> None:
        await self._server.stop()
