"""Per-model base URLs: `/models/{name}/v1/...` is `/v1/...` with `{name}` as its model.

A balancer in front of many asr-supervisors should send each model's requests to the few
boxes that keep it warm, but the model of a transcription sits inside a multipart body,
which balancers do not read. Every OpenAI client takes a base URL, though, and a balancer
can hash a path segment: `base_url="http://lb/models/large-v3/v1"` pins a client to the
boxes its hash picks (HAProxy's `hash-type consistent` in deploy/haproxy), with no client
changes. Names with a `/` are sent URL-encoded (`/models/org%2Fmodel/v1`).

This middleware only moves the name out of the path, before routing: every route under
`/v1/` then serves the pinned model too, the WebSocket ones included. What a body's own
`model` may say then is `TranscriptionService.choose`'s rule.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

#: scope["state"] key (Starlette's `request.state`) holding the pinned model's name.
PINNED = "pinned_model"
_PATH = re.compile(rb"^/models/([^/]+)(/v1(?:/.*)?)$")


class ModelBaseUrl:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = scope.get("raw_path") or scope["path"].encode()
            if match := _PATH.match(raw):
                rest = match.group(2)
                scope = dict(scope)
                scope["state"] = {**scope.get("state", {}), PINNED: unquote(match.group(1).decode("latin-1"))}
                scope["raw_path"] = rest
                scope["path"] = unquote(rest.decode("latin-1"))
        await self.app(scope, receive, send)


def pinned_model(scope: Scope) -> str | None:
    """The model the request's base URL names, if it came by one."""
    name = scope.get("state", {}).get(PINNED)
    return name if isinstance(name, str) else None
