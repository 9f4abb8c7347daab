"""A strict, fast decoder for SNMPv1/v2c trap and inform messages (BER), and nothing else.

A generic ASN.1 codec decodes about 2,500 traps a second here; a trap is a handful of TLVs of
a known shape, so this walks them directly. It is strict on purpose: definite lengths only,
each no longer than needed and inside its parent, no bytes left over, OIDs in their shortest
form, values in their SNMP ranges. Anything else raises BerError with the reason, which the receiver
counts. It never raises anything else, whatever the bytes: the receive path relies on that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SNMP_TRAP_OID",
    "SYS_UPTIME",
    "TRAP_ADDRESS",
    "TRAP_COMMUNITY",
    "BerError",
    "TrapMessage",
    "decode_message",
    "inform_response",
    "is_v3",
    "read_community",
    "v1_to_v2",
]

# PDU tags.
_V1_TRAP = 0xA4
_INFORM = 0xA6
_V2_TRAP = 0xA7

# Value tags and the type names they decode to (the SMI names; pysnmp uses the same).
_INTEGER, _OCTETS, _NULL, _OID = 0x02, 0x04, 0x05, 0x06
_IPADDRESS, _COUNTER32, _GAUGE32, _TIMETICKS, _OPAQUE, _COUNTER64 = (
    0x40,
    0x41,
    0x42,
    0x43,
    0x44,
    0x46,
)
TYPE_NAMES = {
    _INTEGER: "Integer",
    _OCTETS: "OctetString",
    _NULL: "Null",
    _OID: "ObjectIdentifier",
    _IPADDRESS: "IpAddress",
    _COUNTER32: "Counter32",
    _GAUGE32: "Gauge32",
    _TIMETICKS: "TimeTicks",
    _OPAQUE: "Opaque",
    _COUNTER64: "Counter64",
    0x80: "NoSuchObject",
    0x81: "NoSuchInstance",
    0x82: "EndOfMibView",
}
_UNSIGNED_BITS = {_COUNTER32: 32, _GAUGE32: 32, _TIMETICKS: 32, _COUNTER64: 64}

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
_SNMP_TRAPS = "1.3.6.1.6.3.1.1.5"  # coldStart.. are .1 to .6 (RFC 3584 section 3.1)
TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"  # snmpTrapAddress.0
TRAP_COMMUNITY = "1.3.6.1.6.3.18.1.4.0"  # snmpTrapCommunity.0
_TRAP_ENTERPRISE = "1.3.6.1.6.3.1.1.4.3.0"  # snmpTrapEnterprise.0

_MAX_OID_ARCS = 128  # RFC 2578: at most 128 sub-identifiers
_MAX_ARC = 2**32 - 1

Value = tuple[str, Any]  # (type name, value): int, bytes, str (OIDs, addresses) or None


class BerError(ValueError):
    """The bytes are not a well-formed SNMPv1/v2c trap or inform; `reason` says what."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} at byte {offset}")
        self.reason = reason
        self.offset = offset


@dataclass(frozen=True, slots=True)
class TrapMessage:
    """A decoded trap or inform, v1 fields kept as they came (see v1_to_v2)."""

    version: int  # 0: SNMPv1, 1: SNMPv2c
    community: bytes
    pdu: str  # "v1-trap", "v2-trap" or "inform"
    request_id: int  # 0 for v1 traps, which have none
    varbinds: tuple[tuple[str, Value], ...]
    enterprise: str = ""  # v1 only, as are the four below
    agent_address: str = ""
    generic_trap: int = 0
    specific_trap: int = 0
    timestamp: int = 0
    pdu_at: int = field(
        default=0, compare=False
    )  # offset of the PDU's tag byte, where an inform's Response differs


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read a tag and a definite length at `pos`; return (tag, content start, content end)."""
    if pos + 2 > end:
        raise BerError("truncated header", pos)
    tag = data[pos]
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise BerError("indefinite length", pos - 1)
        if count > 4 or pos + count > end:
            raise BerError("bad length", pos - 1)
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise BerError("length not in its shortest form", pos - 1)
        pos += count
    if pos + length > end:
        raise BerError("length beyond its container", pos)
    return tag, pos, pos + length


def _expect(data: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    found, start, stop = _header(data, pos, end)
    if found != tag:
        raise BerError(f"{what}: tag 0x{found:02x}, expected 0x{tag:02x}", pos)
    return start, stop


def _integer(data: bytes, start: int, stop: int) -> int:
    # Longer than needed is tolerated: pyasn1 itself encodes -128 as ff 80, and the value is
    # unambiguous; the length cap keeps it cheap.
    if start == stop:
        raise BerError("empty INTEGER", start)
    if stop - start > 9:
        raise BerError("INTEGER too long", start)
    return int.from_bytes(data[start:stop], "big", signed=True)


def _int32(data: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    start, stop = _expect(data, pos, end, _INTEGER, what)
    value = _integer(data, start, stop)
    if not -(2**31) <= value < 2**31:
        raise BerError(f"{what} out of range", start)
    return value, stop


_OID_CACHE: dict[bytes, str] = {}  # traps repeat the same OIDs: decode each encoding once
_OID_CACHE_SIZE = 8192


def _oid(data: bytes, start: int, stop: int) -> str:
    encoded = data[start:stop]
    text = _OID_CACHE.get(encoded)
    if text is None:
        text = _decode_oid(encoded, start)
        if len(_OID_CACHE) >= _OID_CACHE_SIZE:
            _OID_CACHE.clear()
        _OID_CACHE[encoded] = text
    return text


def _decode_oid(encoded: bytes, offset: int) -> str:
    if not encoded:
        raise BerError("empty OBJECT IDENTIFIER", offset)
    if max(encoded) < 0x80:  # every sub-identifier is one byte: the common case
        first = min(encoded[0] // 40, 2)
        if len(encoded) + 1 > _MAX_OID_ARCS:
            raise BerError("OBJECT IDENTIFIER beyond SNMP's limits", offset)
        return f"{first}.{encoded[0] - 40 * first}" + "".join(f".{b}" for b in encoded[1:])
    arcs: list[int] = []
    value = 0
    fresh = True
    for pos, byte in enumerate(encoded, offset):
        if fresh and byte == 0x80:
            raise BerError("OBJECT IDENTIFIER sub-identifier with a leading 0x80", pos)
        value = (value << 7) | (byte & 0x7F)
        fresh = byte < 0x80
        if fresh:
            if not arcs:
                first = min(value // 40, 2)
                arcs += (first, value - 40 * first)
            else:
                arcs.append(value)
            value = 0
    if not fresh:
        raise BerError("OBJECT IDENTIFIER cut inside a sub-identifier", offset + len(encoded))
    if len(arcs) > _MAX_OID_ARCS or max(arcs) > _MAX_ARC:
        raise BerError("OBJECT IDENTIFIER beyond SNMP's limits", offset)
    return ".".join(map(str, arcs))


def _value(data: bytes, pos: int, end: int) -> tuple[Value, int]:
    if pos + 2 <= end and data[pos + 1] < 0x80:  # a one-byte length: inline
        tag, start, stop = data[pos], pos + 2, pos + 2 + data[pos + 1]
        if stop > end:
            raise BerError("length beyond its container", start)
    else:
        tag, start, stop = _header(data, pos, end)
    name = TYPE_NAMES.get(tag)
    if name is None:
        raise BerError(f"unknown value type 0x{tag:02x}", pos)
    if tag == _INTEGER:
        value: Any = _integer(data, start, stop)
        if not -(2**31) <= value < 2**31:
            raise BerError("Integer32 out of range", start)
    elif tag in (_OCTETS, _OPAQUE):
        value = data[start:stop]
    elif tag == _OID:
        value = _oid(data, start, stop)
    elif tag == _IPADDRESS:
        if stop - start != 4:
            raise BerError("IpAddress is not 4 bytes", start)
        value = ".".join(map(str, data[start:stop]))
    elif tag in _UNSIGNED_BITS:
        if start == stop:
            raise BerError(f"empty {name}", start)
        value = _integer(data, start, stop)
        if not 0 <= value < 2 ** _UNSIGNED_BITS[tag]:
            raise BerError(f"{name} out of range", start)
    else:  # NULL and the three exception values carry nothing
        if start != stop:
            raise BerError(f"{name} with content", start)
        value = None
    return (name, value), stop


_V2_ONLY = frozenset({"Counter64", "NoSuchObject", "NoSuchInstance", "EndOfMibView"})


def _varbinds(
    data: bytes, pos: int, end: int, *, v1: bool = False
) -> tuple[tuple[str, Value], ...]:
    start, stop = _expect(data, pos, end, 0x30, "variable-bindings")
    if stop != end:
        raise BerError("bytes after the variable-bindings", stop)
    found: list[tuple[str, Value]] = []
    pos = start
    while pos < stop:
        # The usual shape, a binding and its name both with one-byte lengths, is read inline;
        # anything else (or anything out of bounds) takes the general path and its errors.
        if (
            pos + 4 <= stop
            and data[pos] == 0x30
            and data[pos + 1] < 0x80
            and data[pos + 2] == _OID
            and data[pos + 3] < 0x80
            and (bind_stop := pos + 2 + data[pos + 1]) <= stop
            and (name_stop := pos + 4 + data[pos + 3]) <= bind_stop
        ):
            name_start = pos + 4
        else:
            bind_start, bind_stop = _expect(data, pos, stop, 0x30, "variable binding")
            name_start, name_stop = _expect(data, bind_start, bind_stop, _OID, "variable name")
        value, after = _value(data, name_stop, bind_stop)
        if after != bind_stop:
            raise BerError("bytes after a variable's value", after)
        if v1 and value[0] in _V2_ONLY:
            raise BerError(f"{value[0]} in an SNMPv1 message", name_stop)
        found.append((_oid(data, name_start, name_stop), value))
        pos = bind_stop
    return tuple(found)


def is_v3(data: bytes) -> bool:
    """Tell at a glance whether a message says it is SNMPv3 (its version field is 3)."""
    if len(data) < 5 or data[0] != 0x30:
        return False
    first = data[1]
    at = 2 if first < 0x80 else 2 + (first & 0x7F)
    return data[at : at + 3] == b"\x02\x01\x03"


def read_community(data: bytes) -> tuple[int, bytes]:
    """Read only a v1/v2c message's version and community, so access is checked before the
    rest is decoded; BerError if even those are malformed or the version is not 0 or 1."""
    try:
        start, stop = _expect(data, 0, len(data), 0x30, "message")
        version, pos = _int32(data, start, stop, "version")
        if version not in (0, 1):
            raise BerError(f"SNMP version {version} is not v1 or v2c", start)
        c_start, c_stop = _expect(data, pos, stop, _OCTETS, "community")
    except (IndexError, ValueError, OverflowError) as exc:
        if isinstance(exc, BerError):
            raise
        raise BerError(f"malformed message ({exc.__class__.__name__})", 0) from None
    return version, data[c_start:c_stop]


def decode_message(data: bytes) -> TrapMessage:
    """Decode one UDP payload; BerError for anything but a well-formed v1/v2c trap or inform."""
    try:
        return _decode(data)
    except BerError:
        raise
    except (IndexError, ValueError, OverflowError) as exc:  # belt and braces: never a crash
        raise BerError(f"malformed message ({exc.__class__.__name__})", 0) from None


def _decode(data: bytes) -> TrapMessage:
    end = len(data)
    start, stop = _expect(data, 0, end, 0x30, "message")
    if stop != end:
        raise BerError("bytes after the message", stop)
    version, pos = _int32(data, start, stop, "version")
    if version not in (0, 1):
        raise BerError(f"SNMP version {version} is not v1 or v2c", start)
    c_start, c_stop = _expect(data, pos, stop, _OCTETS, "community")
    community = data[c_start:c_stop]
    tag, p_start, p_stop = _header(data, c_stop, stop)
    if p_stop != stop:
        raise BerError("bytes after the PDU", p_stop)
    if version == 0 and tag == _V1_TRAP:
        return _v1_trap(data, community, p_start, p_stop)
    if version == 1 and tag in (_V2_TRAP, _INFORM):
        request_id, pos = _int32(data, p_start, p_stop, "request-id")
        status, pos = _int32(data, pos, p_stop, "error-status")
        index, pos = _int32(data, pos, p_stop, "error-index")
        if not 0 <= status <= 18 or index < 0:  # RFC 3416's ranges
            raise BerError("error-status or error-index out of range", p_start)
        if tag == _INFORM and (status or index):  # a sender sets both to 0 (RFC 3416, 4.2.7)
            raise BerError("inform with error-status or error-index set", p_start)
        return TrapMessage(
            version=1,
            community=community,
            pdu="v2-trap" if tag == _V2_TRAP else "inform",
            request_id=request_id,
            varbinds=_varbinds(data, pos, p_stop),
            pdu_at=c_stop,
        )
    raise BerError(f"PDU 0x{tag:02x} is not a trap or inform for version {version}", c_stop)


def _v1_trap(data: bytes, community: bytes, pos: int, end: int) -> TrapMessage:
    e_start, e_stop = _expect(data, pos, end, _OID, "enterprise")
    a_start, a_stop = _expect(data, e_stop, end, _IPADDRESS, "agent-addr")
    if a_stop - a_start != 4:
        raise BerError("agent-addr is not 4 bytes", a_start)
    generic, pos = _int32(data, a_stop, end, "generic-trap")
    if not 0 <= generic <= 6:
        raise BerError(f"generic-trap {generic} is not 0 to 6", a_stop)
    specific, pos = _int32(data, pos, end, "specific-trap")
    t_start, t_stop = _expect(data, pos, end, _TIMETICKS, "time-stamp")
    timestamp = _integer(data, t_start, t_stop)
    if not 0 <= timestamp < 2**32:
        raise BerError("time-stamp out of range", t_start)
    return TrapMessage(
        version=0,
        community=community,
        pdu="v1-trap",
        request_id=0,
        varbinds=_varbinds(data, t_stop, end, v1=True),
        enterprise=_oid(data, e_start, e_stop),
        agent_address=".".join(map(str, data[a_start:a_stop])),
        generic_trap=generic,
        specific_trap=specific,
        timestamp=timestamp,
    )


def v1_to_v2(message: TrapMessage) -> tuple[tuple[str, Value], ...]:
    """The varbinds of a v1 trap in SNMPv2 form (RFC 3584, section 3.1): uptime, trap OID,
    the trap's own varbinds, then the agent address, community and enterprise."""
    if message.generic_trap < 6:
        trap_oid = f"{_SNMP_TRAPS}.{message.generic_trap + 1}"
    else:
        trap_oid = f"{message.enterprise}.0.{message.specific_trap}"
    return (
        (SYS_UPTIME, ("TimeTicks", message.timestamp)),
        (SNMP_TRAP_OID, ("ObjectIdentifier", trap_oid)),
        *message.varbinds,
        (TRAP_ADDRESS, ("IpAddress", message.agent_address)),
        (TRAP_COMMUNITY, ("OctetString", message.community)),
        (_TRAP_ENTERPRISE, ("ObjectIdentifier", message.enterprise)),
    )


def inform_response(data: bytes, message: TrapMessage) -> bytes:
    """The Response that acknowledges a decoded v2c inform (RFC 3416, section 4.2.7).

    It is the inform itself with the PDU tag turned into Response: same request-id, same
    variable bindings, error fields zero (the decoder rejects an inform where they are not).
    """
    if message.pdu != "inform":
        raise ValueError("only an inform is acknowledged")
    at = message.pdu_at
    return b"".join((data[:at], b"\xa2", data[at + 1 :]))
