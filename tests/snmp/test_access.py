"""Community access: default deny, networks per community, IPv4 seen through IPv6."""

from __future__ import annotations

import ipaddress

from tocsin.snmp.access import Community, CommunityAccess
from tocsin.snmp.reasons import BAD_COMMUNITY, NETWORK_NOT_ALLOWED


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def test_nothing_configured_refuses_everything() -> None:
    """Test the default: with no community listed, every packet is a bad community."""
    assert CommunityAccess([]).check(b"public", "10.0.0.1") == BAD_COMMUNITY


def test_a_community_without_networks_is_accepted_from_anywhere() -> None:
    """Test that a listed community is accepted from any address, others are refused."""
    access = CommunityAccess([Community(b"public")])
    assert access.check(b"public", "203.0.113.9") is None
    assert access.check(b"Public", "203.0.113.9") == BAD_COMMUNITY  # communities are exact


def test_networks_restrict_where_a_community_may_send_from() -> None:
    """Test source networks, IPv4 and IPv6, including an IPv4-mapped IPv6 sender."""
    access = CommunityAccess([Community(b"ops", (net("10.0.0.0/8"), net("2001:db8::/32")))])
    assert access.check(b"ops", "10.1.2.3") is None
    assert access.check(b"ops", "2001:db8::7") is None
    assert access.check(b"ops", "::ffff:10.9.9.9") is None
    assert access.check(b"ops", "192.168.1.1") == NETWORK_NOT_ALLOWED
    assert access.check(b"ops", "fe80::1%eth0") == NETWORK_NOT_ALLOWED


def test_a_community_listed_twice_may_send_from_either_entry() -> None:
    """Test that entries merge: networks add up; an entry without networks opens it fully."""
    both = CommunityAccess(
        [Community(b"c", (net("10.0.0.0/8"),)), Community(b"c", (net("192.168.0.0/16"),))]
    )
    assert both.check(b"c", "10.0.0.1") is None
    assert both.check(b"c", "192.168.3.4") is None
    assert both.check(b"c", "172.16.0.1") == NETWORK_NOT_ALLOWED
    opened = CommunityAccess([Community(b"c", (net("10.0.0.0/8"),)), Community(b"c")])
    assert opened.check(b"c", "172.16.0.1") is None


def test_verdicts_stay_right_past_the_cache_size() -> None:
    """Test that the bounded verdict cache never changes an answer."""
    access = CommunityAccess([Community(b"ops", (net("10.0.0.0/8"),))])
    for round_ in range(2):
        for i in range(5000):
            address = f"10.0.{i // 256}.{i % 256}" if i % 2 else f"11.0.{i // 256}.{i % 256}"
            expected = None if i % 2 else NETWORK_NOT_ALLOWED
            assert access.check(b"ops", address) == expected, (round_, address)
