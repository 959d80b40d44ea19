"""Count the SMTP receiver's open connections, in all and per client address.

Why: every connection costs memory and a slot in the gateway's work; without a limit one
client can open as many as it likes and hold each mid-DATA. A connection over either
limit is greeted with 421 4.7.0 and closed (RFC 5321 3.8 allows 421 as the greeting).
"""

from __future__ import annotations

import ipaddress
from collections import Counter

from mailgate.replies import R421_TOO_MANY_CONNECTIONS, R421_TOO_MANY_FROM_CLIENT


class ConnectionLimits:
    """The open connections of one listening server; a limit of 0 means none."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.open = 0
        self._by_client: Counter[str] = Counter()

    def admit(self, client: str) -> str | None:
        """Count a new connection from ``client``; or the refusal to greet it with."""
        if self.total and self.open >= self.total:
            return R421_TOO_MANY_CONNECTIONS
        if self.per_client and self._by_client[client] >= self.per_client:
            return R421_TOO_MANY_FROM_CLIENT
        self.open += 1
        self._by_client[client] += 1
        return None

    def release(self, client: str) -> None:
        """Forget one admitted connection from ``client``."""
        self.open -= 1
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]


def client_key(peer: object) -> str:
    """What a connection is counted under: a TCP peer's IPv4 address or IPv6 /64 (one
    site's hosts get a /64, so per address would be no limit), else "local"."""
    if not (isinstance(peer, tuple) and peer):
        return "local"
    try:
        address = ipaddress.ip_address(str(peer[0]).partition("%")[0])
    except ValueError:
        return str(peer[0])
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
