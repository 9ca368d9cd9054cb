"""The API's own description (`/openapi.json`) and its browsable pages (`/docs`, `/redoc`).

With API keys set, the description needs a key like every /v1 route: it maps every route
and parameter, which is a head start for someone probing the server. The pages are then
off (404): a browser opening them cannot send a bearer key with the page's own fetch of
`/openapi.json`, so they could only show an error. Without keys, all three are open.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from supervisor.interfaces.http.auth import require_api_key
from supervisor.interfaces.http.errors import APIError

router = APIRouter(include_in_schema=False)


@router.get("/openapi.json", dependencies=[Depends(require_api_key)])
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger(request: Request) -> HTMLResponse:
    _pages_allowed(request)
    return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{request.app.title} - API")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    _pages_allowed(request)
    return get_redoc_html(openapi_url="/openapi.json", title=f"{request.app.title} - API")


def _pages_allowed(request: Request) -> None:
    if request.app.state.settings.api_keys:
        raise APIError(
            404,
            "The API pages are off while API keys are set; fetch /openapi.json with your key instead.",
            code="not_found",
        )
