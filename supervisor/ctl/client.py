"""How asrctl reaches the server: where (`--url`, `--api-key`, before or after the command),
one request, and its failure as one line on stderr and exit code 1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import httpx
import typer

from supervisor.interfaces.http.schemas import Health

DEFAULT_URL = "http://127.0.0.1:5000"


@dataclass(frozen=True, slots=True)
class Target:
    """The server and key the options before the command named (or the defaults)."""

    url: str = DEFAULT_URL
    api_key: str | None = None


# The same options after the command; given there, they win over those before it (and $ASR_URL).
UrlOption = Annotated[str | None, typer.Option("--url", help="the server's base URL (default: $ASR_URL)")]
KeyOption = Annotated[str | None, typer.Option("--api-key", help="API or admin key (default: $ASR_API_KEY)")]


def resolve_target(ctx: typer.Context, url: str | None, api_key: str | None) -> Target:
    before: Target = ctx.find_root().obj or Target()
    return Target(url or before.url, api_key or before.api_key)


def auth_headers(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}


def request(method: str, target: Target, path: str, **kwargs: Any) -> httpx.Response:
    """One call to the server; a down server or an API error is one line and exit code 1."""
    headers = auth_headers(target)
    try:
        response = httpx.request(
            method, target.url.rstrip("/") + path, timeout=kwargs.pop("timeout", 30), headers=headers, **kwargs
        )
    except httpx.TransportError as exc:
        exit_unreachable(target, exc)
    if response.status_code >= 400:
        exit_with_error(response)
    return response


def exit_unreachable(target: Target, exc: Exception) -> NoReturn:
    typer.echo(f"asrctl: {unreachable_message(target, exc)}", err=True)
    raise typer.Exit(1)


def unreachable_message(target: Target, exc: Exception) -> str:
    return f"cannot reach asr-supervisor at {target.url}: {exc}"


def exit_with_error(response: httpx.Response) -> NoReturn:
    typer.echo(f"asrctl: {error_message(response)}", err=True)
    raise typer.Exit(1)


def error_message(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text.strip()
    return f"{message} (HTTP {response.status_code})"


def fetch_health(target: Target) -> Health:
    """`/health`, read into the same typed snapshot the server writes it from."""
    return Health.model_validate(request("GET", target, "/health").json())
