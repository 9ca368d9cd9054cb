"""Optional API keys for the /v1 routes (`server.api_keys` or $ASR_API_KEYS)."""

from __future__ import annotations

import hmac

from fastapi import Request

from supervisor.interfaces.http.errors import APIError


def require_api_key(request: Request) -> None:
    """FastAPI dependency: with keys configured, demand `Authorization: Bearer <one of them>`.

    With none configured, anything (including the placeholder key an SDK insists on) passes.
    """
    _check(request, request.app.state.settings.api_keys)


def require_admin_key(request: Request) -> None:
    """Admin routes take an admin key when there are any, else an API key when there are any."""
    settings = request.app.state.settings
    _check(request, settings.admin_keys or settings.api_keys)


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def key_matches(token: str | None, keys: tuple[str, ...]) -> bool:
    """Whether `token` is one of `keys` (always, when there are none), in constant time:
    every key is compared, so timing says nothing about which matched."""
    if not keys:
        return True
    matched = False
    for key in keys:
        matched |= hmac.compare_digest((token or "").encode(), key.encode())
    return matched and token is not None


def _check(request: Request, keys: tuple[str, ...]) -> None:
    token = bearer_token(request.headers.get("authorization", ""))
    if key_matches(token, keys):
        return
    if not token:
        # Told apart from a wrong key: a missing header is a set-up mistake, not a bad secret.
        raise APIError(
            401,
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
            code="missing_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    raise APIError(
        401,
        "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",
        code="invalid_api_key",
        headers={"WWW-Authenticate": "Bearer"},
    )
