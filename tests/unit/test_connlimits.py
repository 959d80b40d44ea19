"""`ConnectionLimits` and `client_key`: what the SMTP receiver counts connections under."""

from __future__ import annotations

import pytest

from mailgate._connlimits import ConnectionLimits, client_key
from mailgate.replies import R421_TOO_MANY_CONNECTIONS, R421_TOO_MANY_FROM_CLIENT


@pytest.mark.parametrize(("peer", "key"), [
    (("192.0.2.7", 25), "192.0.2.7"),
    (("::ffff:192.0.2.7", 25, 0, 0), "192.0.2.7"),
    (("2001:db8:1:2:aaaa::1", 25, 0, 0), "2001:db8:1:2::/64"),
    (("2001:db8:1:2:ffff::9", 25, 0, 0), "2001:db8:1:2::/64"),
    (("2001:db8:1:3::1", 25, 0, 0), "2001:db8:1:3::/64"),
    (("fe80::1%eth0", 25, 0, 2), "fe80::/64"),
    ("", "local"),
    (None, "local"),
])
def test_clients_are_counted_by_ipv4_address_or_ipv6_64(peer: object, key: str) -> None:
    assert client_key(peer) == key


def test_limits_count_in_all_and_per_client_and_give_slots_back() -> None:
    limits = ConnectionLimits(total=3, per_client=2)
    assert limits.admit("a") is None and limits.admit("a") is None
    assert limits.admit("a") == R421_TOO_MANY_FROM_CLIENT
    assert limits.admit("b") is None
    assert limits.admit("c") == R421_TOO_MANY_CONNECTIONS
    limits.release("a")
    assert limits.admit("c") is None and limits.open == 3
    for client in ("a", "b", "c"):
        limits.release(client)
    assert limits.open == 0 and limits.admit("a") is None


def test_a_limit_of_zero_is_no_limit() -> None:
    limits = ConnectionLimits(total=0, per_client=0)
    assert all(limits.admit("a") is None for _ in range(10_000))
