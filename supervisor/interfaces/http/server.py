"""uvicorn, with one more phase at the front of its shutdown: live sessions finish first.

When uvicorn stops, it closes every WebSocket at once (code 1012): someone dictating would
lose the sentence they were saying. So shutdown starts by no longer accepting connections,
then asks every live session to finish (each gets `session_drain_timeout` seconds and a
final for what was heard, then 1012), and only then hands over to uvicorn's own phases.
"""

from __future__ import annotations

import logging
import socket

import uvicorn
from fastapi import FastAPI

log = logging.getLogger("asr.http")


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:  # uvicorn logs no address for sockets it was handed
            for sock in sockets or []:
                host, port = sock.getsockname()[:2]
                log.info("http listening on http://%s:%d", f"[{host}]" if ":" in host else host, port)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Phase 0: stop accepting, then let live sessions end with their finals.
        for server in self.servers:
            server.close()
        service = getattr(self._app.state, "service", None)
        if service is not None:
            settings = self._app.state.settings
            await service.wind_down_live(settings.server.session_drain_timeout + 5.0)
        await super().shutdown(sockets)
