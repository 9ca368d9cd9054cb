"""`GET /metrics`: the Prometheus text format, behind the API keys when there are any.

Unlike `/health` (which probes must reach without a secret), a scrape is configured once
by whoever runs Prometheus, which sends a bearer token as easily as a URL
(`authorization: {credentials: ...}` in its scrape config); and request rates and model
names are worth no more to a stranger than the transcription routes are. No key, nor any
setting, is ever a label. With `server.metrics = false` (`--no-metrics`) the route does not
exist: 404.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Response

from supervisor.interfaces.http.auth import require_api_key
from supervisor.metrics.exposition import Metrics
from supervisor.workers import devices

router = APIRouter(dependencies=[Depends(require_api_key)])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    # async: the collector reads the owners' state on the event loop, as their other readers do;
    # the GPUs' memory comes from nvidia-smi, a subprocess, so it is read first, in a thread.
    await asyncio.to_thread(devices.detect)
    exposed: Metrics = request.app.state.metrics
    return Response(exposed.render(), media_type=Metrics.CONTENT_TYPE)
