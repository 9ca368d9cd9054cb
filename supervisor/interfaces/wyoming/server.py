"""The Wyoming listener (TCP or unix://): one `WyomingHandler` per connection, and its drain.

The listener is asyncio's own, not wyoming's `AsyncServer`: a graceful stop needs the
open connections (to ask each to finish its utterance) and the listening socket apart
(to stop accepting first), which `AsyncServer` keeps private; its `stop()` closes every
connection at once, an utterance being spoken included.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

from supervisor.config import ServerTable, wyoming_uri
from supervisor.interfaces.wyoming.access import PeerGuard, exposure_warning
from supervisor.interfaces.wyoming.handler import WyomingHandler
from supervisor.interfaces.wyoming.limits import WyomingLimits
from supervisor.service import TranscriptionService

log = logging.getLogger("asr.wyoming")


class WyomingService:
    """Started and stopped by the app's lifespan; `drain` begins the server's shutdown.

    `api_keys_set`: the HTTP routes need a key (from the config or $ASR_API_KEYS); Wyoming
    cannot ask for one, so a listener open to every address is then worth a loud warning.
    """

    def __init__(self, server: ServerTable, service: TranscriptionService, api_keys_set: bool = False) -> None:
        self.uri = wyoming_uri(server)
        self.limits = WyomingLimits.from_settings(server)
        self._allow = server.wyoming_allow
        self.warning = exposure_warning(self.uri, server.wyoming_allow, api_keys_set)
        self._factory = partial(WyomingHandler, service, self.limits, PeerGuard(server.wyoming_allow))
        self._listener: asyncio.Server | None = None
        self._open: dict[asyncio.Task[None], WyomingHandler] = {}  # connection task → its handler
        self._deadline: float | None = None  # loop time the drain ends, once it began

    @property
    def connections(self) -> int:
        return len(self._open)

    async def start(self) -> None:
        where = urlparse(self.uri)
        if where.scheme == "unix":
            Path(where.path).unlink(missing_ok=True)  # a socket file left by a previous run
            self._listener = await asyncio.start_unix_server(self._connection, path=where.path)
            log.info("wyoming listening on %s (every local client the socket's permissions let in)", self.uri)
        else:
            self._listener = await asyncio.start_server(self._connection, host=where.hostname, port=where.port)
            log.info("wyoming listening on %s for %s", self.uri, ", ".join(str(net) for net in self._allow) or "nobody")
        if self.warning:
            log.warning("SECURITY: %s", self.warning)

    def drain(self, seconds: float) -> None:
        """Accept no more connections; each open one closes once the utterance it is in has
        its transcript (an idle one at once). `stop` waits for them up to `seconds` from now."""
        if self._listener is not None:
            self._listener.close()  # the listening socket only: open connections go on
        self._deadline = asyncio.get_running_loop().time() + seconds
        for handler in self._open.values():
            handler.drain()

    async def stop(self) -> None:
        """Let drained connections finish until the drain's deadline, then close the rest."""
        if self._deadline is None:
            self.drain(0.0)
        assert self._deadline is not None
        left = self._deadline - asyncio.get_running_loop().time()
        if self._open and left > 0:
            await asyncio.wait(set(self._open), timeout=left)
        if self._open:
            log.warning("wyoming: closing %d connection(s) still busy after the drain", len(self._open))
            for task in self._open:
                task.cancel()  # the handler's `finally` releases what the connection held
            await asyncio.wait(set(self._open))
        where = urlparse(self.uri)
        if where.scheme == "unix":
            Path(where.path).unlink(missing_ok=True)

    def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A task of our own, not a coroutine callback: asyncio logs a cancelled callback
        # task as an error, and `stop` cancels the connections that outlive the drain.
        handler = self._factory(reader, writer)
        if self._deadline is not None:
            handler.drain()  # accepted just before the listener closed
        task = asyncio.create_task(handler.run(), name=f"wyoming {handler.peer}")
        self._open[task] = handler
        task.add_done_callback(self._closed)

    def _closed(self, task: asyncio.Task[None]) -> None:
        del self._open[task]
