"""The web page at `/`: live dictation, file transcription and the models dashboard.

Plain files from `static/`, served as they are: no build step, and nothing fetched from
anywhere else, so the page works on a LAN without internet. The files hold no data: all the
page shows comes from the API, with the user's key, so with `api_keys` set it shows nothing
until it has been given one. `/ui/auth.json` says which keys the server wants, so the page
asks for one before a request fails instead of after.

`ui = false` (`--no-ui`) leaves this router out: `/` is then a 404, as it was before.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from supervisor.interfaces.http.errors import APIError

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).parent / "static"
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
#: Only the page's own files run, and only the page's own origin is spoken to: a transcript
#: that contains markup stays text, and no other site may frame the page (clickjacking).
#: `connect-src 'self'` covers the page's own WebSocket (CSP 3).
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self'; img-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on each load: an upgraded server's page is never mixed with an old cached script.
    "Cache-Control": "no-cache",
}
#: The files there are when the server starts; a name not among them is a 404, whatever its path.
_FILES = {path.name: path for path in STATIC.iterdir() if path.suffix in _MEDIA_TYPES}


@router.api_route("/", methods=["GET", "HEAD"])
async def page() -> FileResponse:
    return _serve("index.html")


@router.get("/ui/auth.json")
async def auth(request: Request) -> dict[str, bool]:
    """Which keys to ask for: `api_key` for everything, `admin_key` (a separate one) to load and unload."""
    settings = request.app.state.settings
    return {"api_key": bool(settings.api_keys), "admin_key": bool(settings.admin_keys)}


@router.api_route("/ui/{name}", methods=["GET", "HEAD"])
async def asset(name: str) -> FileResponse:
    return _serve(name)


def _serve(name: str) -> FileResponse:
    path = _FILES.get(name)
    if path is None:
        raise APIError(404, f"No such file in the web page: {name!r}.", code="not_found")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_HEADERS)
