"""The FastAPI application: routes, error shapes, and the registry's lifetime."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from supervisor.config import Settings
from supervisor.interfaces.http import admin, audio, docs, errors, health, live_websocket, models, realtime
from supervisor.interfaces.http.body_timeout import BodyTimeout
from supervisor.interfaces.http.model_path import ModelBaseUrl
from supervisor.interfaces.http.startup import QuietStartupFailure, StartupError, reason
from supervisor.interfaces.http.upload_limit import UploadLimit
from supervisor.interfaces.wyoming.server import WyomingService
from supervisor.models.registry import ModelRegistry
from supervisor.reload import Reloader
from supervisor.request_log import RequestLog
from supervisor.service import TranscriptionService
from supervisor.uploads import Spool
from supervisor.workers import runtime_dir


def create_app(settings: Settings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Whatever started is closed in reverse order: at shutdown, and also when a later
        # start-up step fails (a Wyoming port taken must not leave the warm spare running).
        async with contextlib.AsyncExitStack() as started:
            try:
                await _start(app, settings, started)
            except StartupError as exc:
                app.state.startup_error = str(exc)
                raise
            yield
            # Shutdown, in order: uvicorn has stopped accepting and drained in-flight HTTP
            # requests; the stack then stops the announcer, lets Wyoming connections finish
            # their utterances until the drain's deadline (server.py), ends every worker and
            # removes the sockets' directory.

    # FastAPI's own unguarded description and pages are off: `docs` serves them, behind the keys.
    app = FastAPI(
        title="asr-supervisor", version="0.1.0", lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None
    )
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(UploadLimit, max_bytes=int(settings.server.max_upload_mb * 1_000_000))
    app.add_middleware(BodyTimeout, timeout=settings.server.http_body_timeout)
    app.add_middleware(QuietStartupFailure)
    app.add_middleware(ModelBaseUrl)  # /models/{name}/v1/... is /v1/... with a pinned model
    app.include_router(audio.router)
    app.include_router(live_websocket.router)
    app.include_router(realtime.router)
    app.include_router(models.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    app.include_router(docs.router)
    if settings.server.metrics:  # imported only then: --no-metrics leaves prometheus_client out
        from supervisor.metrics import route as metrics_route

        app.include_router(metrics_route.router)
    if settings.server.ui:
        from supervisor.interfaces.http import ui

        app.include_router(ui.router)
    return app


async def _start(app: FastAPI, settings: Settings, started: contextlib.AsyncExitStack) -> None:
    server = settings.server
    registry = ModelRegistry(settings)
    service = TranscriptionService(registry)
    wyoming = WyomingService(server, service, api_keys_set=bool(settings.api_keys)) if server.wyoming else None
    if wyoming is not None:
        # Listen first: a taken port then fails before any worker process exists. No
        # request can slip in before the registry starts: that start does not yield.
        try:
            await wyoming.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen for Wyoming on {wyoming.uri}: {reason(exc)} (server.wyoming_port, server.wyoming_uri)"
            ) from None
    try:
        await registry.start()
    except OSError as exc:
        if wyoming is not None:
            await wyoming.stop()
        where = exc.filename or runtime_dir.base_dir(server.runtime_dir)
        raise StartupError(
            f"cannot create the workers' runtime directory {where}: {reason(exc)} (server.runtime_dir)"
        ) from None
    # Closed in reverse: the announcer, then Wyoming's connections, then the workers.
    started.push_async_callback(registry.close)
    if wyoming is not None:
        started.push_async_callback(wyoming.stop)
    app.state.registry = registry
    app.state.service = service
    app.state.spool = Spool()  # in TMPDIR, as Starlette keeps an upload while it arrives
    started.callback(app.state.spool.close)
    app.state.wyoming = wyoming  # the HTTP server drains it at shutdown, beside its own connections
    service.observers.add(RequestLog())  # one log line per request, every interface
    if server.metrics:
        from supervisor.metrics import Metrics

        app.state.metrics = Metrics(registry, service, wyoming, ready=lambda: health.readiness(app).reason is None)
    # SIGHUP reloads asr.toml (so does POST /v1/admin/reload); closed before the workers stop.
    app.state.reloader = Reloader(app, registry)
    app.state.reloader.install_signal_handler()
    started.push_async_callback(app.state.reloader.close)
    if wyoming is not None and server.zeroconf and not server.wyoming_uri:
        from supervisor.interfaces.wyoming.discovery import Announcer  # only then: zeroconf is not free to import

        announcer = Announcer(server.wyoming_port, server.host, server.zeroconf_name)
        try:
            await announcer.start()
        except OSError as exc:
            raise StartupError(f"cannot announce Wyoming on the LAN (zeroconf): {reason(exc)}") from None
        started.push_async_callback(announcer.stop)
