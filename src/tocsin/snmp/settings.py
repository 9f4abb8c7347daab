"""The `sources.snmp` config section: listen addresses, communities, v3 users, MIB folders.

Strict like the rest of the config: unknown keys, bad networks, unknown protocols and short
keys are errors at file:line, so a typo never silently opens or closes the door.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tocsin.rules.schema import (
    check_keys,
    expect_items,
    expect_list,
    expect_map,
    expect_str,
    parse_path,
    parse_size,
)
from tocsin.snmp.access import Community
from tocsin.yamlsrc import Mark, SourceError, value_mark

__all__ = [
    "AUTH_PROTOCOLS",
    "PRIV_PROTOCOLS",
    "SECURITY_LEVELS",
    "SnmpConfig",
    "SnmpUser",
    "parse_snmp",
]

SECURITY_LEVELS = ("noAuthNoPriv", "authNoPriv", "authPriv")
AUTH_PROTOCOLS = ("MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512")
PRIV_PROTOCOLS = ("DES", "AES", "AES-192", "AES-256")
DEFAULT_RECEIVE_BUFFER = 8 << 20
ALL_IPV4 = "0.0.0.0"  # noqa: S104 - a trap receiver listens for the network; snmptrapd does too
DEFAULT_LISTEN: tuple[tuple[str, int], ...] = ((ALL_IPV4, 162),)
_KEYS = ("listen", "receive_buffer", "engine_id", "mibs", "communities", "users")
_USER_KEYS = ("name", "auth", "auth_key", "priv", "priv_key", "engine_id", "min_level")
_MIN_KEY = 8  # RFC 3414, section 11.2: shorter passphrases are refused by net-snmp too


@dataclass(frozen=True, slots=True)
class SnmpUser:
    """An SNMPv3 user; traps need the sender's engine IDs, informs use the daemon's own."""

    name: str
    auth: str | None = None
    auth_key: str = ""
    priv: str | None = None
    priv_key: str = ""
    engine_ids: tuple[bytes, ...] = ()
    min_level: str = "authNoPriv"


@dataclass(frozen=True, slots=True)
class SnmpConfig:
    """Where traps are received and who may send them (nobody unless listed)."""

    listen: tuple[tuple[str, int], ...] = DEFAULT_LISTEN
    receive_buffer: int = DEFAULT_RECEIVE_BUFFER
    engine_id: bytes | None = None  # None: made once and kept in state_dir
    mib_dirs: tuple[Path, ...] = ()
    communities: tuple[Community, ...] = ()
    users: tuple[SnmpUser, ...] = ()


def parse_snmp(spec: Any, where: Mark, base: Path) -> SnmpConfig:
    """Parse `sources.snmp`; relative MIB folders are relative to the config file."""
    data = expect_map(spec, where, "sources.snmp")
    check_keys(data, _KEYS, "sources.snmp option")

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    listen = DEFAULT_LISTEN
    if "listen" in data:
        items = expect_items(data["listen"], at("listen"), "listen", scalars=(str, int))
        if not items:
            raise SourceError(at("listen"), "sources.snmp.listen needs at least one address")
        listen = tuple(
            _address(item, value_mark(items, i, at("listen"))) for i, item in enumerate(items)
        )
    mibs = expect_items(data.get("mibs"), at("mibs"), "sources.snmp.mibs")
    mib_dirs = tuple(
        parse_path(base, item, value_mark(mibs, i, at("mibs")), "a MIB folder")
        for i, item in enumerate(mibs)
    )
    communities_spec = (
        expect_list(data["communities"], at("communities"), "sources.snmp.communities")
        if "communities" in data
        else []
    )
    users_spec = (
        expect_list(data["users"], at("users"), "sources.snmp.users") if "users" in data else []
    )
    users = tuple(
        _user(item, value_mark(users_spec, i, at("users"))) for i, item in enumerate(users_spec)
    )
    seen: dict[str, int] = {}
    for index, user in enumerate(users):
        if user.name in seen:
            raise SourceError(
                value_mark(users_spec, index, at("users")),
                f"SNMPv3 user '{user.name}' is listed twice (first as user {seen[user.name] + 1})",
            )
        seen[user.name] = index
    return SnmpConfig(
        listen=listen,
        receive_buffer=parse_size(
            data.get("receive_buffer", DEFAULT_RECEIVE_BUFFER),
            at("receive_buffer"),
            "receive_buffer",
            least=4096,
            most=1 << 30,
        ),
        engine_id=_engine_id(data["engine_id"], at("engine_id")) if "engine_id" in data else None,
        mib_dirs=mib_dirs,
        communities=tuple(
            _community(item, value_mark(communities_spec, i, at("communities")))
            for i, item in enumerate(communities_spec)
        ),
        users=users,
    )


def _address(value: Any, where: Mark) -> tuple[str, int]:
    """Parse "host:port", "[v6]:port" or a bare port (all IPv4 interfaces)."""
    if isinstance(value, int) and not isinstance(value, bool):
        host, port_text = ALL_IPV4, str(value)
    else:
        text = expect_str(value, where, "a listen address")
        match = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d+)|([^:\[\]]+):(\d+)|(\d+)", text)
        if match is None:
            raise SourceError(
                where, f"listen address {text!r} is not host:port, [ipv6]:port or a port"
            )
        host = match[1] or match[3] or ALL_IPV4
        port_text = match[2] or match[4] or match[5]
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise SourceError(where, f"port {port} is not 0 to 65535")
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        raise SourceError(where, f"listen host {host!r} is not an IP address") from None
    return host, port


def _engine_id(value: Any, where: Mark) -> bytes:
    """Parse an engine ID given in hex (0x optional, ':' allowed), 5 to 32 bytes (RFC 3411)."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise SourceError(
            where,
            "quote the engine_id ('0x8000...'): unquoted, YAML reads it as a number, "
            "and a number is not the same bytes",
        )
    text = expect_str(value, where, "an engine_id").strip().lower().replace(":", "")
    text = text.removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise SourceError(where, f"engine_id {value!r} is not hex") from None
    if not 5 <= len(raw) <= 32:
        raise SourceError(where, f"engine_id is {len(raw)} bytes; it must be 5 to 32")
    return raw


def _community(spec: Any, where: Mark) -> Community:
    data = expect_map(spec, where, "a community")
    check_keys(data, ("community", "networks"), "community option", required=("community",))
    name = expect_str(data["community"], value_mark(data, "community", where), "community")
    if not name:
        raise SourceError(value_mark(data, "community", where), "community must not be empty")
    networks_at = value_mark(data, "networks", where)
    items = expect_items(data.get("networks"), networks_at, "networks")
    networks = []
    for i, item in enumerate(items):
        item_at = value_mark(items, i, networks_at)
        try:
            networks.append(
                ipaddress.ip_network(expect_str(item, item_at, "a network"), strict=False)
            )
        except ValueError as error:
            raise SourceError(item_at, f"bad network {item!r}: {error}") from None
    return Community(name=name.encode(), networks=tuple(networks))


def _user(spec: Any, where: Mark) -> SnmpUser:
    data = expect_map(spec, where, "an SNMPv3 user")
    check_keys(data, _USER_KEYS, "SNMPv3 user option", required=("name",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    name = expect_str(data["name"], at("name"), "name")
    auth = _choice(data, "auth", AUTH_PROTOCOLS, at("auth"))
    priv = _choice(data, "priv", PRIV_PROTOCOLS, at("priv"))
    if priv is not None and auth is None:
        raise SourceError(at("priv"), f"user '{name}': privacy needs authentication ('auth')")
    keys = {}
    for key, protocol in (("auth_key", auth), ("priv_key", priv)):
        if protocol is None:
            if key in data:
                raise SourceError(at(key), f"user '{name}': {key} given without its protocol")
            keys[key] = ""
            continue
        if key not in data:
            raise SourceError(where, f"user '{name}': {protocol} needs '{key}'")
        keys[key] = expect_str(data[key], at(key), key)
        if len(keys[key]) < _MIN_KEY:
            raise SourceError(at(key), f"user '{name}': {key} must be at least 8 characters")
    highest = "authPriv" if priv else "authNoPriv" if auth else "noAuthNoPriv"
    level = data.get("min_level", highest)  # keys configured are keys required
    if level not in SECURITY_LEVELS:
        raise SourceError(at("min_level"), f"min_level must be one of {', '.join(SECURITY_LEVELS)}")
    if SECURITY_LEVELS.index(level) > SECURITY_LEVELS.index(highest):
        raise SourceError(
            at("min_level"), f"user '{name}': min_level {level} needs keys the user does not have"
        )
    ids = expect_items(data.get("engine_id"), at("engine_id"), "engine_id", scalars=(str, int))
    return SnmpUser(
        name=name,
        auth=auth,
        auth_key=keys["auth_key"],
        priv=priv,
        priv_key=keys["priv_key"],
        engine_ids=tuple(
            _engine_id(v, value_mark(ids, i, at("engine_id"))) for i, v in enumerate(ids)
        ),
        min_level=str(level),
    )


def _choice(data: Any, key: str, choices: tuple[str, ...], where: Mark) -> str | None:
    if key not in data:
        return None
    value = expect_str(data[key], where, key)
    for choice in choices:
        if value.upper() == choice:
            return choice
    raise SourceError(where, f"unknown {key} protocol {value!r}; use one of {', '.join(choices)}")
