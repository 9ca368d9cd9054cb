"""The HTTP socket the supervisor binds itself (to fail fast on a taken port) must serve
like one uvicorn would have bound: every accepted connection with TCP_NODELAY.

Without it, Nagle's algorithm held each response's body until the client acknowledged its
head, and the client delays that ACK: every request on a kept-alive connection (what the
OpenAI SDKs use) waited about 40 ms.
"""

from __future__ import annotations

import asyncio
import socket

from supervisor.interfaces.http.startup import listen


async def test_connections_accepted_on_the_listening_socket_have_tcp_nodelay() -> None:
    sock = listen("127.0.0.1", 0)
    nodelay: asyncio.Queue[int] = asyncio.Queue()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nodelay.put_nowait(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connection, sock=sock)
    async with server:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        assert await asyncio.wait_for(nodelay.get(), 10) != 0
        writer.close()
