"""Who may use the Wyoming listener: the protocol has no credentials, so the address decides.

`server.api_keys` guard the HTTP routes; a Wyoming client cannot present one. Instead a
connection is served only if its peer address is in `server.wyoming_allow` (by default
loopback and the private ranges a home network uses). A unix:// listener has no peer
address: the socket file's permissions guard it, and every connection is served.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlparse

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PeerGuard:
    def __init__(self, allow: Sequence[Network]) -> None:
        self._allow = tuple(allow)

    def allows(self, peername: object) -> bool:
        """`peername` as asyncio gives it: (host, port[, flow, scope]) for TCP, '' or None for unix."""
        if not isinstance(peername, tuple) or not peername:
            return True  # a unix socket: guarded by its file's permissions
        address = peer_address(peername)
        if address is None:
            return False
        return any(address in network for network in self._allow)


def peer_address(peername: tuple[object, ...]) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(str(peername[0]).split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d
    return address


def allows_everyone(allow: Sequence[Network]) -> bool:
    return any(network.prefixlen == 0 for network in allow)


def beyond_loopback(uri: str) -> bool:
    """Whether a listener at `uri` can be reached from other machines."""
    parsed = urlparse(uri)
    if parsed.scheme != "tcp":
        return False
    host = parsed.hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: it may resolve to anything


def exposure_warning(uri: str, allow: Sequence[Network], api_keys_set: bool) -> str | None:
    """The start-up warning for a server whose HTTP routes need a key but whose Wyoming
    listener serves anyone who can reach it; None if there is nothing to warn about."""
    if not (api_keys_set and beyond_loopback(uri) and allows_everyone(allow)):
        return None
    return (
        f"Wyoming on {uri} serves EVERY address (server.wyoming_allow includes "
        f"{', '.join(str(n) for n in allow if n.prefixlen == 0)}) although server.api_keys are set: "
        "Wyoming has no credentials, so anyone who can reach this port transcribes without a key. "
        "Narrow server.wyoming_allow, listen on loopback, or set wyoming = false."
    )
