"""Start-up failures the operator must fix: say which, in one line, and exit.

A port already taken, a runtime directory that cannot be written: these are not bugs, so
they get no traceback, and the server must not stay up half-started (under systemd it
would look active while serving nothing). The lifespan raises `StartupError` after closing
whatever it had started; `QuietStartupFailure` keeps uvicorn from logging it as a crash;
the CLI prints the line and exits 1.
"""

from __future__ import annotations

import os
import socket

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class StartupError(Exception):
    """A start-up step failed for a reason outside the program; the message says what to fix."""


def reason(exc: OSError) -> str:
    """'Address already in use', not asyncio's 'error while attempting to bind on address ...'."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """The HTTP socket, bound and listening before anything else starts, so that a taken port
    fails at once, with nothing to clean up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose proto
    # says TCP. With 0, Nagle held each response's body until the client's delayed ACK of
    # its head: tens of milliseconds added to every request on a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart must not wait out TIME_WAIT
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise StartupError(f"cannot listen for HTTP on {where}: {reason(exc)} (server.host, server.port)") from None
    sock.set_inheritable(False)
    return sock


class QuietStartupFailure:
    """Tells uvicorn that start-up failed without handing it the traceback to log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def holding_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                held.append(message)  # sent below, once we know why
            else:
                await send(message)

        try:
            await self.app(scope, receive, holding_send)
        except StartupError:
            await send({"type": "lifespan.startup.failed", "message": ""})
            return
        except BaseException:
            for message in held:
                await send(message)  # an unexpected failure is a bug: keep its traceback
            raise
        for message in held:
            await send(message)
