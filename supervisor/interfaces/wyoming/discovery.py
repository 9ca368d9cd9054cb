"""Announce the Wyoming server on the local network (mDNS `_wyoming._tcp`) for Home Assistant.

Off by default: it sends multicast to the whole LAN, which not everyone wants.
"""

from __future__ import annotations

import logging
import socket
import uuid

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

log = logging.getLogger("asr.discovery")

SERVICE_TYPE = "_wyoming._tcp.local."
_MDNS_GROUP = "224.0.0.251"


def default_name() -> str:
    """Stable per machine (its MAC), like wyoming's own servers, so HA sees the same device."""
    return f"asr-supervisor-{uuid.getnode():012x}"


def lan_address() -> str:
    """The address other machines reach us on: the one the kernel would route mDNS from.

    connect() on a UDP socket only picks a route; no packet is sent.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((_MDNS_GROUP, 1))
        return str(sock.getsockname()[0])


def service_info(port: int, name: str, address: str) -> AsyncServiceInfo:
    return AsyncServiceInfo(
        SERVICE_TYPE,
        f"{name}.{SERVICE_TYPE}",
        addresses=[socket.inet_aton(address)],
        port=port,
        properties={"program": "asr-supervisor"},
    )


class Announcer:
    def __init__(self, port: int, host: str, name: str | None = None) -> None:
        address = lan_address() if host in ("0.0.0.0", "", "::") else host
        if address.startswith("127."):
            log.warning("zeroconf: the Wyoming server listens on %s only; other machines cannot reach it", address)
        self.info = service_info(port, name or default_name(), address)
        self._zeroconf: AsyncZeroconf | None = None

    async def start(self) -> None:
        self._zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only)
        await self._zeroconf.async_register_service(self.info)
        log.info("zeroconf: announced %s at %s:%d", self.info.name, self.info.parsed_addresses()[0], self.info.port)

    async def stop(self) -> None:
        if self._zeroconf is not None:
            await self._zeroconf.async_unregister_service(self.info)
            await self._zeroconf.async_close()
