"""uvicorn, with the service's whole lifecycle around it: systemd notified, and a drain on stop.

Start-up: once uvicorn has run the lifespan (Wyoming listening, the registry started) and
listens for HTTP, systemd is told READY=1, and a task on the event loop pings its watchdog
and keeps STATUS= up to date with the loaded models (`supervisor.notify`).

Shutdown (SIGTERM, SIGINT), in phases, all within `drain` seconds (`server.drain_timeout`,
which the CLI hands to uvicorn as `timeout_graceful_shutdown`):
0. Accept nothing new: both listeners close; kept-alive HTTP connections close when idle,
   or after the response they are sending; Wyoming connections after the utterance in
   progress, or at once if none is.
1. Live sessions finish (each gets `session_drain_timeout` seconds and a final for what was
   heard, then 1012). uvicorn would close every WebSocket at once: someone dictating would
   lose the sentence they were saying.
2. uvicorn's own phases: in-flight HTTP requests get what is left of the drain, then are
   cancelled; then the lifespan's shutdown waits for Wyoming's drain to end (the same
   deadline) and stops every worker (`registry.close`: SHUTDOWN, SIGTERM, SIGKILL).
The process then exits 0: a stop that went as planned is not a death by signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from supervisor.notify import Notifier

log = logging.getLogger("asr.http")


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app
        self._notifier = Notifier.from_environment()
        app.state.notifier = self._notifier  # for whoever else tells systemd something (a reload)
        app.state.accepting = False  # listening, and not draining: part of /health/ready
        self._keep_alive: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        for sock in sockets or []:  # uvicorn logs no address for sockets it was handed
            host, port = sock.getsockname()[:2]
            log.info("http listening on http://%s:%d", f"[{host}]" if ":" in host else host, port)
        self._app.state.accepting = True
        status = models_status(self._app)
        self._notifier.ready(status)
        if self._notifier.enabled:
            self._keep_alive = asyncio.create_task(self._notifier.keep_alive(lambda: models_status(self._app), status))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        drain = float(self.config.timeout_graceful_shutdown or 0)
        deadline = loop.time() + drain
        self._app.state.accepting = False
        self._notifier.stopping(f"stopping: in-flight requests get up to {drain:g} s")
        log.info("stopping: in-flight requests, utterances and live sessions get up to %g s", drain)

        # Phase 0: accept nothing new, on either interface.
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            if isinstance(connection, H11Protocol):  # not a WebSocket: that would close it now
                connection.shutdown()
        wyoming = getattr(self._app.state, "wyoming", None)
        if wyoming is not None:
            wyoming.drain(drain)

        # Phase 1: live sessions end with their finals.
        service = getattr(self._app.state, "service", None)
        if service is not None:
            session_drain = self._app.state.settings.server.session_drain_timeout
            await service.wind_down_live(min(session_drain + 5.0, max(deadline - loop.time(), 0.0)))

        # Phase 2: uvicorn's own, with what is left of the drain; then the lifespan's end.
        self.config.timeout_graceful_shutdown = max(deadline - loop.time(), 0.0)  # type: ignore[assignment]
        try:
            await super().shutdown(sockets)
        finally:
            if self._keep_alive is not None:
                self._keep_alive.cancel()
                await asyncio.wait({self._keep_alive})
            self._notifier.close()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn raises the signal again once it has shut down, to die by it. A drain
            # that completed is a clean stop: exit 0, which is what systemd and scripts expect.
            self._captured_signals.clear()


def models_status(app: FastAPI) -> str:
    """One line for `systemctl status`: which models are loaded, loading or failed."""
    registry = getattr(app.state, "registry", None)
    if registry is None:
        return "starting"
    by_state: dict[str, list[str]] = {}
    for name, model in registry.snapshot().items():
        by_state.setdefault(model.state, []).append(name)
    parts = [f"loaded: {', '.join(by_state.get('ready', [])) or 'none'}"]
    parts += [f"{state}: {', '.join(by_state[state])}" for state in ("starting", "failed") if state in by_state]
    parts.append(f"default: {registry.default_model}")
    return "; ".join(parts)
