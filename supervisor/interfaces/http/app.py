"""The FastAPI application: routes, error shapes, and the registry's lifetime."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from supervisor.config import Settings
from supervisor.interfaces.http import admin, audio, errors, health, live, models
from supervisor.interfaces.http.upload_limit import UploadLimit
from supervisor.interfaces.wyoming.server import WyomingService
from supervisor.models.registry import ModelRegistry
from supervisor.service import TranscriptionService


def create_app(settings: Settings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = ModelRegistry(settings)
        await registry.start()
        service = TranscriptionService(registry)
        app.state.registry = registry
        app.state.service = service
        wyoming = None
        if settings.server.wyoming:
            wyoming = WyomingService(settings.server, service)
            await wyoming.start()
        announcer = None
        if wyoming is not None and settings.server.zeroconf and not settings.server.wyoming_uri:
            from supervisor.interfaces.wyoming.discovery import Announcer  # only then: zeroconf is not free to import

            announcer = Announcer(settings.server.wyoming_port, settings.server.host, settings.server.zeroconf_name)
            await announcer.start()
        try:
            yield
        finally:
            # Shutdown, in order: uvicorn has stopped accepting and drained in-flight
            # HTTP requests; close Wyoming connections; then end every worker and
            # remove the sockets' directory.
            if announcer is not None:
                await announcer.stop()
            if wyoming is not None:
                await wyoming.stop()
            await registry.close()

    app = FastAPI(title="asr-supervisor", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(UploadLimit, max_bytes=int(settings.server.max_upload_mb * 1_000_000))
    app.include_router(audio.router)
    app.include_router(live.router)
    app.include_router(models.router)
    app.include_router(admin.router)
    app.include_router(health.router)
    return app
