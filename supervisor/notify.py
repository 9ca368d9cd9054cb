"""systemd's notification protocol (sd_notify): READY, STOPPING, STATUS and the watchdog.

`Type=notify` lets systemd report the service started only once both listeners are up,
and `WatchdogSec=` restarts a supervisor whose event loop is wedged: the pings come from
a task on that loop, so a loop that no longer turns stops sending them.

The protocol is one datagram of `KEY=value` lines to the AF_UNIX socket named in
$NOTIFY_SOCKET (an abstract address when it starts with '@'). It is a few lines of
socket code; the PyPI clients are unmaintained (`sdnotify`, last release 2017) or need
libsystemd and a compiler (`systemd-python`, `cysystemd`). Without $NOTIFY_SOCKET (not
under systemd, or `Type=exec`) every call does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable

log = logging.getLogger("asr.notify")

#: Seconds between two looks at the models for STATUS= when no watchdog asks for more.
STATUS_TICK = 2.0


class Notifier:
    """Sends notifications to systemd; does nothing when not started by it.

    The variables are taken out of the environment when read, as sd_notify's
    `unset_environment` does: workers inherit the environment, and a worker that pinged
    the watchdog would keep a wedged supervisor alive.
    """

    def __init__(self, address: str | None, watchdog_seconds: float | None) -> None:
        self.address = address
        self.watchdog_seconds = watchdog_seconds
        self._sock: socket.socket | None = None
        self._warned = False
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @classmethod
    def from_environment(cls) -> Notifier:
        address = os.environ.pop("NOTIFY_SOCKET", None) or None
        usec = os.environ.pop("WATCHDOG_USEC", None)
        pid = os.environ.pop("WATCHDOG_PID", None)
        watchdog: float | None = None
        if usec and (not pid or pid == str(os.getpid())):  # the pings are wanted from us, not another process
            with contextlib.suppress(ValueError):
                watchdog = int(usec) / 1e6 if int(usec) > 0 else None
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> None:
        """One datagram; a failure is logged once and otherwise ignored (the service goes on)."""
        if self._sock is None or self.address is None:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd at %s: %s", self.address, exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def keep_alive(self, status: Callable[[], str], last: str | None = None) -> None:
        """Ping the watchdog at half its interval, and send STATUS= whenever `status()` changes
        (`last`: the one already sent). Runs until cancelled, on the event loop on purpose.

        A look every `STATUS_TICK` seconds costs a snapshot of each model: cheaper than
        a hook in every state change, and STATUS= is for a person reading `systemctl status`.
        """
        tick = STATUS_TICK if self.watchdog_seconds is None else min(STATUS_TICK, self.watchdog_seconds / 2)
        while True:
            lines = ["WATCHDOG=1"] if self.watchdog_seconds is not None else []
            now = status()
            if now != last:
                lines.append(f"STATUS={now}")
                last = now
            if lines:
                self.send(*lines)
            await asyncio.sleep(tick)
