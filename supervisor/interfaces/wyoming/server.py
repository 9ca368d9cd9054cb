"""The Wyoming listener (TCP or unix://): one `WyomingHandler` per connection."""

from __future__ import annotations

import logging
from functools import partial

from wyoming.server import AsyncServer

from supervisor.config import ServerTable, wyoming_uri
from supervisor.interfaces.wyoming.access import PeerGuard, exposure_warning
from supervisor.interfaces.wyoming.handler import WyomingHandler
from supervisor.interfaces.wyoming.limits import WyomingLimits
from supervisor.service import TranscriptionService

log = logging.getLogger("asr.wyoming")


class WyomingService:
    """Started and stopped by the app's lifespan.

    `api_keys_set`: the HTTP routes need a key (from the config or $ASR_API_KEYS); Wyoming
    cannot ask for one, so a listener open to every address is then worth a loud warning.
    """

    def __init__(self, server: ServerTable, service: TranscriptionService, api_keys_set: bool = False) -> None:
        self.uri = wyoming_uri(server)
        self.limits = WyomingLimits.from_settings(server)
        self._allow = server.wyoming_allow
        self.warning = exposure_warning(self.uri, server.wyoming_allow, api_keys_set)
        self._server = AsyncServer.from_uri(self.uri)
        self._factory = partial(WyomingHandler, service, self.limits, PeerGuard(server.wyoming_allow))

    async def start(self) -> None:
        await self._server.start(self._factory)
        if self.uri.startswith("unix://"):
            log.info("wyoming listening on %s (every local client the socket's permissions let in)", self.uri)
        else:
            log.info("wyoming listening on %s for %s", self.uri, ", ".join(str(net) for net in self._allow) or "nobody")
        if self.warning:
            log.warning("SECURITY: %s", self.warning)

    async def stop(self) -> None:
        await self._server.stop()
