"""Turn a decoded trap (any version) into an Event with MIB names, for rules to match.

Runs once per trap in a storm, so each OID's translation is remembered (bounded), and the
event is built from plain dicts and strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tocsin.model import Event
from tocsin.snmp.ber import SNMP_TRAP_OID, SYS_UPTIME, TRAP_ADDRESS, TRAP_COMMUNITY, Value
from tocsin.snmp.mibs import MibIndex, Resolved

__all__ = ["MESSAGE_CHARS", "TrapMapper", "render_octets"]

MESSAGE_CHARS = 4096  # an event's message is cut here; fields.vars keep every value whole
_CACHE_SIZE = 8192
_UNSET_ADDRESS = "0.0.0.0"  # noqa: S104 - an agent address a proxy left empty
# Modules that only name the tree's branches (enterprises, mib-2): "under enterprises" says
# nothing a rule could use, so OIDs found only below them keep their numeric form.
_BRANCHES = frozenset({"SNMPv2-SMI", "RFC1155-SMI"})
# The agent a proxy forwarded for (RFC 3584 adds it to v1 traps too), named even without
# SNMP-COMMUNITY-MIB, which tocsin does not ship: (node, name) by instance OID.
_RFC3584 = {
    TRAP_ADDRESS: ("1.3.6.1.6.3.18.1.3", "snmpTrapAddress"),
}


def render_octets(raw: bytes) -> str:
    """Show an OCTET STRING as text when it is printable UTF-8, else as hex (aa:bb:cc)."""
    try:
        text = (raw.rstrip(b"\x00") or raw).decode()  # some agents send C strings, NUL included
    except UnicodeDecodeError:
        return raw.hex(":")
    if text.isprintable() or all(c.isprintable() or c in "\t\r\n" for c in text):
        return text
    return raw.hex(":")


class TrapMapper:
    """Map (trap OID, varbinds, sender) to an Event; unknown OIDs keep their numeric form."""

    def __init__(self, mibs: MibIndex) -> None:
        self._mibs = mibs
        self._vars: dict[str, tuple[str, str, str | None]] = {}  # oid -> (key, instance, node)
        self._oids: dict[str, str] = {}  # OID value -> its name, "IF-MIB::ifIndex.3"

    def event(
        self,
        *,
        varbinds: Sequence[tuple[str, Value]],
        sender: tuple[str, int],
        received: float,
        version: str,
        pdu: str,
        credential: tuple[str, str],
    ) -> Event:
        """Build the event of one trap or inform whose varbinds are in SNMPv2 form.

        `credential` is ("community", text) for v1/v2c or ("user", name) for v3.
        """
        trap_oid = ""
        uptime: int | None = None
        host = sender[0]
        named: dict[str, Any] = {}
        for oid, (kind, raw) in varbinds:
            if oid == SNMP_TRAP_OID and kind == "ObjectIdentifier" and not trap_oid:
                trap_oid = raw
                continue
            if oid == SYS_UPTIME and kind == "TimeTicks" and uptime is None:
                uptime = raw
                continue
            if oid == TRAP_ADDRESS and kind == "IpAddress" and raw != _UNSET_ADDRESS:
                host = raw
            elif oid == TRAP_COMMUNITY:
                continue  # a secret, kept out of vars and the message (fields.community has it)
            key, instance, node = self._var(oid)
            if key in named:
                key = f"{key}.{instance}" if instance else oid
            named[key] = self._value(kind, raw, node)
        trap = self.oid_name(trap_oid) if trap_oid else ""
        fields: dict[str, Any] = {
            "trap": trap,
            "trap_oid": trap_oid,
            "vars": named,
            "version": version,
            "pdu": pdu,
            credential[0]: credential[1],
            "agent": sender[0],
        }
        if uptime is not None:
            fields["uptime"] = uptime
        text = " ".join([trap or "(no snmpTrapOID)", *(f"{k}={v}" for k, v in named.items())])
        return Event(
            time=received,
            received=received,
            source="snmp",
            origin=f"snmp://{sender[0]}:{sender[1]}",
            message=text[:MESSAGE_CHARS],
            host=host,
            program="snmptrap",
            level="notice",
            fields=fields,
        )

    def oid_name(self, oid: str) -> str:
        """Return an OID as MODULE::name[.instance], or as given when no MIB knows it."""
        name = self._oids.get(oid)
        if name is None:
            found = self._resolve(oid)
            if found is None:
                name = oid
            else:
                name = f"{found.module}::{found.name}"
                if found.instance:
                    name = f"{name}.{found.instance}"
            if len(self._oids) >= _CACHE_SIZE:
                self._oids.clear()
            self._oids[oid] = name
        return name

    def _var(self, oid: str) -> tuple[str, str, str | None]:
        known = self._vars.get(oid)
        if known is None:
            found = self._resolve(oid)
            known = (oid, "", None) if found is None else (found.name, found.instance, found.node)
            if len(self._vars) >= _CACHE_SIZE:
                self._vars.clear()
            self._vars[oid] = known
        return known

    def _resolve(self, oid: str) -> Resolved | None:
        found = self._mibs.resolve(oid)
        if found is not None and found.instance and found.module in _BRANCHES:
            found = None
        if found is None and oid in _RFC3584:
            node, name = _RFC3584[oid]
            return Resolved("SNMP-COMMUNITY-MIB", name, "0", node)
        return found

    def _value(self, kind: str, raw: Any, node: str | None) -> Any:
        if kind == "Integer":
            label = None if node is None else self._mibs.label(node, raw)
            return raw if label is None else label
        if kind == "OctetString":
            return render_octets(raw)
        if kind == "ObjectIdentifier":
            return self.oid_name(raw)
        if kind == "Opaque":
            return raw.hex(":")
        return raw  # counters, gauges, ticks: int; IpAddress: str; Null and exceptions: None
