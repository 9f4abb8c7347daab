"""SNMP test helpers: packets encoded by pysnmp (the reference) and real net-snmp senders."""

from __future__ import annotations

import random
import shutil
import subprocess
from typing import Any

import pytest
from pyasn1.codec.ber import encoder
from pysnmp.proto import api

V1 = api.PROTOCOL_MODULES[api.SNMP_VERSION_1]
V2 = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]

LINK_DOWN_OID = "1.3.6.1.6.3.1.1.5.3"
LINK_UP_OID = "1.3.6.1.6.3.1.1.5.4"

# An operator's MIB: a notification under enterprises.99999, an enumerated TC, a TruthValue.
TEST_MIB = """\
TOCSIN-TEST-MIB DEFINITIONS ::= BEGIN
IMPORTS
    MODULE-IDENTITY, OBJECT-TYPE, NOTIFICATION-TYPE, enterprises FROM SNMPv2-SMI
    TEXTUAL-CONVENTION, TruthValue FROM SNMPv2-TC
    ifIndex FROM IF-MIB;

tocsinTestMIB MODULE-IDENTITY
    LAST-UPDATED "202611250000Z"
    ORGANIZATION "tocsin"
    CONTACT-INFO "tocsin tests"
    DESCRIPTION "A MIB for the tests of the MIB compiler."
    ::= { enterprises 99999 }

Severity ::= TEXTUAL-CONVENTION
    STATUS current
    DESCRIPTION "How bad it is."
    SYNTAX INTEGER { minor(1), major(2), critical(3) }

tocsinNotifications OBJECT IDENTIFIER ::= { tocsinTestMIB 0 }
tocsinObjects OBJECT IDENTIFIER ::= { tocsinTestMIB 1 }

tocsinSeverity OBJECT-TYPE
    SYNTAX Severity
    MAX-ACCESS accessible-for-notify
    STATUS current
    DESCRIPTION "The severity of the alarm."
    ::= { tocsinObjects 1 }

tocsinAcknowledged OBJECT-TYPE
    SYNTAX TruthValue
    MAX-ACCESS accessible-for-notify
    STATUS current
    DESCRIPTION "Whether someone has seen it."
    ::= { tocsinObjects 2 }

tocsinFlags OBJECT-TYPE
    SYNTAX BITS { red(0), blue(1) }
    MAX-ACCESS accessible-for-notify
    STATUS current
    DESCRIPTION "Bits are positions, not values: no labels."
    ::= { tocsinObjects 3 }

tocsinAlarm NOTIFICATION-TYPE
    OBJECTS { tocsinSeverity, tocsinAcknowledged, ifIndex }
    STATUS current
    DESCRIPTION "Something is wrong."
    ::= { tocsinNotifications 1 }
END
"""


def _pysnmp_value(module: Any, name: str, value: Any) -> Any:
    if name == "IpAddress":
        return module.IpAddress(value)
    if name == "Null":
        return module.Null("")
    kind = {"Integer": "Integer", "Gauge32": "Gauge32"}.get(name, name)
    if module is V1 and kind in ("Counter32", "Gauge32", "Counter64"):
        kind = {"Counter32": "Counter", "Gauge32": "Gauge"}.get(kind, kind)
    return getattr(module, kind)(value)


def encode_v2(
    community: bytes, varbinds: list[tuple[str, tuple[str, Any]]], *, inform: bool
) -> bytes:
    """A v2c trap or inform, encoded by pysnmp."""
    pdu = V2.InformRequestPDU() if inform else V2.SNMPv2TrapPDU()
    V2.apiTrapPDU.set_defaults(pdu)
    V2.apiTrapPDU.set_varbinds(
        pdu, [(V2.ObjectIdentifier(o), _pysnmp_value(V2, *v)) for o, v in varbinds]
    )
    message = V2.Message()
    V2.apiMessage.set_defaults(message)
    V2.apiMessage.set_community(message, community)
    V2.apiMessage.set_pdu(message, pdu)
    return bytes(encoder.encode(message))


def encode_v1(  # noqa: PLR0917 - the v1 trap's fields, in their order
    community: bytes, enterprise: str, agent: str, generic: int, specific: int, stamp: int,
    varbinds: list[tuple[str, tuple[str, Any]]],
) -> bytes:  # fmt: skip
    """A v1 trap, encoded by pysnmp."""
    pdu = V1.TrapPDU()
    V1.apiTrapPDU.set_defaults(pdu)
    V1.apiTrapPDU.set_enterprise(pdu, enterprise)
    V1.apiTrapPDU.set_agent_address(pdu, agent)
    V1.apiTrapPDU.set_generic_trap(pdu, generic)
    V1.apiTrapPDU.set_specific_trap(pdu, specific)
    V1.apiTrapPDU.set_timestamp(pdu, stamp)
    V1.apiTrapPDU.set_varbinds(
        pdu, [(V1.ObjectIdentifier(o), _pysnmp_value(V1, *v)) for o, v in varbinds]
    )
    message = V1.Message()
    V1.apiMessage.set_defaults(message)
    V1.apiMessage.set_community(message, community)
    V1.apiMessage.set_pdu(message, pdu)
    return bytes(encoder.encode(message))


def get_request(community: bytes) -> bytes:
    """A v2c GetRequest for sysUpTime.0: valid SNMP, but not a notification."""
    pdu = V2.GetRequestPDU()
    V2.apiPDU.set_defaults(pdu)
    V2.apiPDU.set_varbinds(pdu, [(V2.ObjectIdentifier("1.3.6.1.2.1.1.3.0"), V2.Null(""))])
    message = V2.Message()
    V2.apiMessage.set_defaults(message)
    V2.apiMessage.set_community(message, community)
    V2.apiMessage.set_pdu(message, pdu)
    return bytes(encoder.encode(message))


def link_trap(community: bytes, if_index: int, *, up: bool = False, inform: bool = False) -> bytes:
    """A v2c linkDown (or linkUp) trap for one interface, as a switch sends it."""
    return encode_v2(
        community,
        [
            ("1.3.6.1.2.1.1.3.0", ("TimeTicks", 12345)),
            ("1.3.6.1.6.3.1.1.4.1.0", ("ObjectIdentifier", LINK_UP_OID if up else LINK_DOWN_OID)),
            (f"1.3.6.1.2.1.2.2.1.1.{if_index}", ("Integer", if_index)),
            (f"1.3.6.1.2.1.2.2.1.2.{if_index}", ("OctetString", f"eth{if_index}".encode())),
            (f"1.3.6.1.2.1.2.2.1.7.{if_index}", ("Integer", 1)),
            (f"1.3.6.1.2.1.2.2.1.8.{if_index}", ("Integer", 1 if up else 2)),
        ],
        inform=inform,
    )


def fuzz_seeds() -> list[bytes]:
    """Real packets to mutate: a v2c linkDown, a v2c inform and a v1 trap."""
    return [
        link_trap(b"public", 3),
        link_trap(b"public", 5, inform=True),
        encode_v1(b"public", "1.3.6.1.4.1.9", "10.0.0.1", 2, 0, 42,
                  [("1.3.6.1.2.1.2.2.1.1.2", ("Integer", 2))]),
    ]  # fmt: skip


def mutate(rng: random.Random, packet: bytes) -> bytes:
    """Flip, insert, delete or cut off one to three bytes of a packet."""
    data = bytearray(packet)
    for _ in range(rng.randint(1, 3)):
        if not data:
            break
        at = rng.randrange(len(data))
        op = rng.random()
        if op < 0.5:
            data[at] = rng.randrange(256)
        elif op < 0.7:
            data.insert(at, rng.randrange(256))
        elif op < 0.9:
            del data[at]
        else:
            del data[at:]
    return bytes(data)


def net_snmp(tool: str, *args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    """Run net-snmp's snmptrap or snmpinform (skip the test if it is not installed)."""
    if shutil.which(tool) is None:
        pytest.skip(
            f"{tool} is not installed (Debian package 'snmp'; scripts/bootstrap installs it)"
        )
    return subprocess.run(
        [tool, "-M", "/nonexistent", "-m", "", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
