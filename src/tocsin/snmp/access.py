"""Which v1/v2c communities may send traps, and from where: default deny, like snmptrapd.

Checked for every packet, so the network verdict of a listed community per source address is
remembered in a bounded cache: a storm comes from few senders.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from tocsin.snmp.reasons import BAD_COMMUNITY, NETWORK_NOT_ALLOWED

__all__ = ["Community", "CommunityAccess"]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Community:
    """A community that is accepted, from any of `networks` (from anywhere when empty)."""

    name: bytes
    networks: tuple[Network, ...] = ()


class CommunityAccess:
    """Decide whether a v1/v2c packet's community may send from its source address."""

    def __init__(self, communities: Sequence[Community]) -> None:
        # A community listed twice may send from either entry's networks; an entry without
        # networks lets it send from anywhere (an empty tuple).
        self._networks: dict[bytes, tuple[Network, ...]] = {}
        for community in communities:
            known = self._networks.get(community.name)
            if known is None:
                self._networks[community.name] = community.networks
            elif known and community.networks:
                self._networks[community.name] = known + community.networks
            else:
                self._networks[community.name] = ()
        self._verdicts: dict[tuple[bytes, str], str | None] = {}

    def check(self, community: bytes, address: str) -> str | None:
        """Return None when accepted, else the reason the packet is refused."""
        networks = self._networks.get(community)
        if networks is None:
            return BAD_COMMUNITY  # not cached: senders choose unknown communities, not us
        if not networks:
            return None
        verdict_key = (community, address)
        try:
            return self._verdicts[verdict_key]
        except KeyError:
            pass
        verdict = self._judge(networks, address)
        if len(self._verdicts) >= _CACHE_SIZE:
            self._verdicts.clear()
        self._verdicts[verdict_key] = verdict
        return verdict

    @staticmethod
    def _judge(networks: tuple[Network, ...], address: str) -> str | None:
        ip = ipaddress.ip_address(address.partition("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # an IPv4 sender seen on a dual-stack socket
        return None if any(ip in net for net in networks) else NETWORK_NOT_ALLOWED
