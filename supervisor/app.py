"""The FastAPI application: routes, error shapes, and the registry's lifetime."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from supervisor import errors, routes
from supervisor.config import Settings
from supervisor.registry import ModelRegistry


def create_app(settings: Settings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = ModelRegistry(settings)
        await registry.start()
        app.state.registry = registry
        try:
            yield
        finally:
            # uvicorn has already stopped accepting and drained in-flight HTTP
            # requests; now end every worker and remove the sockets' directory.
            await registry.close()

    app = FastAPI(title="asr-supervisor", version="0.1.0", lifespan=lifespan)
    errors.install(app)
    app.include_router(routes.router)
    return app
