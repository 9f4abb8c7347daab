"""The trap decoder against pysnmp's: same result on what it accepts, never a crash."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder
from pysnmp.proto import api

from snmpkit import V2, encode_v1, encode_v2, mutate
from tocsin.snmp.ber import (
    BerError,
    TrapMessage,
    decode_message,
    inform_response,
    is_v3,
    read_community,
    v1_to_v2,
)

ARCS = st.integers(0, 2**32 - 1)
OIDS = st.builds(
    lambda first, second, rest: ".".join(map(str, (first, second, *rest))),
    st.integers(0, 2),
    st.integers(0, 39),
    st.lists(ARCS, min_size=0, max_size=12),
)
VALUES = st.one_of(
    st.builds(lambda v: ("Integer", v), st.integers(-(2**31), 2**31 - 1)),
    st.builds(lambda v: ("OctetString", v), st.binary(max_size=40)),
    st.just(("Null", None)),
    st.builds(lambda v: ("ObjectIdentifier", v), OIDS),
    st.builds(lambda v: ("IpAddress", ".".join(map(str, v))), st.binary(min_size=4, max_size=4)),
    st.builds(lambda v: ("Counter32", v), st.integers(0, 2**32 - 1)),
    st.builds(lambda v: ("Gauge32", v), st.integers(0, 2**32 - 1)),
    st.builds(lambda v: ("TimeTicks", v), st.integers(0, 2**32 - 1)),
    st.builds(lambda v: ("Counter64", v), st.integers(0, 2**64 - 1)),
)
VARBINDS = st.lists(st.tuples(OIDS, VALUES), max_size=6)


_TAGS = {
    0x02: "Integer", 0x04: "OctetString", 0x05: "Null", 0x06: "ObjectIdentifier",
    0x40: "IpAddress", 0x41: "Counter32", 0x42: "Gauge32", 0x43: "TimeTicks",
    0x44: "Opaque", 0x46: "Counter64", 0x80: "NoSuchObject", 0x81: "NoSuchInstance",
    0x82: "EndOfMibView",
}  # fmt: skip


def _plain(value: Any) -> tuple[str, Any]:
    """A pysnmp value as (type name, Python value), like the fast decoder gives."""
    tag = value.tagSet[0]
    number = tag.tagClass | tag.tagFormat | tag.tagId
    name = _TAGS[number & ~0x20]
    if name in ("OctetString", "Opaque"):
        return name, bytes(value.asOctets())
    if name == "IpAddress":
        return name, ".".join(map(str, value.asOctets()))
    if name == "ObjectIdentifier":
        return name, str(value)
    if name in ("Null", "NoSuchObject", "NoSuchInstance", "EndOfMibView"):
        return name, None
    return name, int(value)


def reference(data: bytes) -> TrapMessage | None:
    """What pysnmp decodes, in the fast decoder's shape; None if it refuses."""
    try:
        version = int(api.decodeMessageVersion(data))
        module = api.PROTOCOL_MODULES[version]
        message, rest = decoder.decode(data, asn1Spec=module.Message())
        if rest:
            return None
        pdu = module.apiMessage.get_pdu(message)
        community = bytes(module.apiMessage.get_community(message).asOctets())
        pdu_api = module.apiTrapPDU if version == 0 else module.apiPDU
        varbinds = tuple((str(o), _plain(v)) for o, v in pdu_api.get_varbinds(pdu))
    except Exception:  # noqa: BLE001 - whatever pysnmp refuses with
        return None
    kind = pdu.__class__.__name__
    if version == 0 and kind == "TrapPDU":
        return TrapMessage(
            version=0, community=community, pdu="v1-trap", request_id=0, varbinds=varbinds,
            enterprise=str(module.apiTrapPDU.get_enterprise(pdu)),
            agent_address=".".join(map(str, module.apiTrapPDU.get_agent_address(pdu).asOctets())),
            generic_trap=int(module.apiTrapPDU.get_generic_trap(pdu)),
            specific_trap=int(module.apiTrapPDU.get_specific_trap(pdu)),
            timestamp=int(module.apiTrapPDU.get_timestamp(pdu)),
        )  # fmt: skip
    if version == 1 and kind in ("SNMPv2TrapPDU", "InformRequestPDU"):
        return TrapMessage(
            version=1, community=community,
            pdu="v2-trap" if kind == "SNMPv2TrapPDU" else "inform",
            request_id=int(module.apiPDU.get_request_id(pdu)), varbinds=varbinds,
        )  # fmt: skip
    return None


LINK_DOWN = encode_v2(
    b"public",
    [
        ("1.3.6.1.2.1.1.3.0", ("TimeTicks", 123)),
        ("1.3.6.1.6.3.1.1.4.1.0", ("ObjectIdentifier", "1.3.6.1.6.3.1.1.5.3")),
        ("1.3.6.1.2.1.2.2.1.1.2", ("Integer", 2)),
        ("1.3.6.1.2.1.2.2.1.2.2", ("OctetString", b"eth0")),
    ],
    inform=False,
)


def test_a_linkdown_trap_decodes_like_pysnmp() -> None:
    """Test a plain v2c linkDown: every field as pysnmp has it."""
    message = decode_message(LINK_DOWN)
    assert message == reference(LINK_DOWN)
    assert message.varbinds[1] == (
        "1.3.6.1.6.3.1.1.4.1.0",
        ("ObjectIdentifier", "1.3.6.1.6.3.1.1.5.3"),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(community=st.binary(max_size=20), varbinds=VARBINDS, inform=st.booleans())
def test_v2c_messages_decode_exactly_as_pysnmp(
    community: bytes, varbinds: list[tuple[str, tuple[str, Any]]], inform: bool
) -> None:
    """Test that any v2c trap or inform pysnmp encodes decodes to what pysnmp decodes."""
    data = encode_v2(community, varbinds, inform=inform)
    assert decode_message(data) == reference(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    community=st.binary(max_size=20),
    enterprise=OIDS,
    agent=st.binary(min_size=4, max_size=4).map(lambda b: ".".join(map(str, b))),
    generic=st.integers(0, 6),
    specific=st.integers(0, 2**31 - 1),
    stamp=st.integers(0, 2**32 - 1),
    varbinds=VARBINDS.map(lambda vs: [v for v in vs if v[1][0] != "Counter64"]),
)
def test_v1_traps_decode_exactly_as_pysnmp(  # noqa: PLR0917 - hypothesis gives each field
    community: bytes, enterprise: str, agent: str, generic: int, specific: int, stamp: int,
    varbinds: list[tuple[str, tuple[str, Any]]],
) -> None:  # fmt: skip
    """Test that any v1 trap pysnmp encodes decodes to what pysnmp decodes."""
    data = encode_v1(community, enterprise, agent, generic, specific, stamp, varbinds)
    assert decode_message(data) == reference(data)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A real trap, truncated, with bytes flipped, inserted or deleted."""
    data = bytearray(draw(st.sampled_from([LINK_DOWN, SEED_V1, SEED_INFORM])))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data.insert(at, draw(st.integers(0, 255)))
        elif op == "delete":
            del data[at]
        else:
            del data[at:]
    return bytes(data)


SEED_V1 = encode_v1(b"public", "1.3.6.1.4.1.9", "10.0.0.1", 2, 0, 42,
                    [("1.3.6.1.2.1.2.2.1.1.2", ("Integer", 2))])  # fmt: skip
SEED_INFORM = encode_v2(b"private", [("1.3.6.1.2.1.1.3.0", ("TimeTicks", 7))], inform=True)


@settings(max_examples=3000, deadline=None)
@given(mutated())
def test_mutated_packets_are_rejected_or_agree_with_pysnmp(data: bytes) -> None:
    """Test the differential property: never a crash; what is accepted, pysnmp decodes alike."""
    try:
        message = decode_message(data)
    except BerError:
        return
    assert message == reference(data)


@given(st.binary(max_size=200))
@settings(max_examples=2000, deadline=None)
def test_random_bytes_never_crash(data: bytes) -> None:
    """Test that arbitrary bytes give a message or a BerError, nothing else."""
    with contextlib.suppress(BerError):
        decode_message(data)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated header"),
        (b"\x30", "truncated header"),
        (b"\x30\x80\x00\x00", "indefinite length"),
        (b"\x30\x81\x05" + bytes(5), "length not in its shortest form"),
        (b"\x30\x03\x02\x00", "length beyond its container"),
        (LINK_DOWN + b"\x00", "bytes after the message"),
        (LINK_DOWN[:-1], "length beyond its container"),
        (b"\x30\x03\x02\x01\x03", "SNMP version 3 is not v1 or v2c"),
    ],
)
def test_malformed_messages_say_why(data: bytes, reason: str) -> None:
    """Test that a malformed message raises BerError naming the problem."""
    with pytest.raises(BerError) as caught:
        decode_message(data)
    assert caught.value.reason == reason


def test_v1_traps_become_v2_varbinds_per_rfc3584() -> None:
    """Test the v1 to v2 form: uptime, trap OID (generic or enterprise.0.specific), extras."""
    generic = decode_message(SEED_V1)
    assert v1_to_v2(generic)[:2] == (
        ("1.3.6.1.2.1.1.3.0", ("TimeTicks", 42)),
        ("1.3.6.1.6.3.1.1.4.1.0", ("ObjectIdentifier", "1.3.6.1.6.3.1.1.5.3")),
    )
    specific = decode_message(encode_v1(b"c", "1.3.6.1.4.1.9.9", "10.0.0.2", 6, 17, 1, []))
    assert v1_to_v2(specific)[1] == (
        "1.3.6.1.6.3.1.1.4.1.0", ("ObjectIdentifier", "1.3.6.1.4.1.9.9.0.17"),
    )  # fmt: skip
    assert v1_to_v2(specific)[-3:] == (
        ("1.3.6.1.6.3.18.1.3.0", ("IpAddress", "10.0.0.2")),
        ("1.3.6.1.6.3.18.1.4.0", ("OctetString", b"c")),
        ("1.3.6.1.6.3.1.1.4.3.0", ("ObjectIdentifier", "1.3.6.1.4.1.9.9")),
    )


def test_100k_seeded_mutations_never_crash_and_agree_when_accepted() -> None:
    """Test 100,000 mutated real traps (seeded, so repeatable): reject, or decode as pysnmp."""
    rng = random.Random(20261125)
    seeds = [LINK_DOWN, SEED_V1, SEED_INFORM]
    accepted = 0
    for _ in range(100_000):
        packet = mutate(rng, rng.choice(seeds))
        try:
            message = decode_message(packet)
        except BerError:
            continue
        accepted += 1
        assert message == reference(packet), packet.hex()
    assert accepted > 1000  # the mutations leave plenty of valid messages to compare


def test_an_inform_response_is_the_inform_answered_as_pysnmp_reads_it() -> None:
    """Test inform_response: pysnmp decodes a Response, same request-id and varbinds, no error."""
    message = decode_message(SEED_INFORM)
    response = inform_response(SEED_INFORM, message)
    decoded, rest = decoder.decode(response, asn1Spec=V2.Message())
    assert rest == b""
    pdu = V2.apiMessage.get_pdu(decoded)
    assert pdu.__class__.__name__ == "ResponsePDU"
    assert int(V2.apiPDU.get_request_id(pdu)) == message.request_id
    assert int(V2.apiPDU.get_error_status(pdu)) == 0
    assert int(V2.apiPDU.get_error_index(pdu)) == 0
    assert [(str(o), int(v)) for o, v in V2.apiPDU.get_varbinds(pdu)] == [("1.3.6.1.2.1.1.3.0", 7)]
    with pytest.raises(ValueError, match="only an inform"):
        inform_response(LINK_DOWN, decode_message(LINK_DOWN))


def test_the_version_and_community_are_read_before_the_rest() -> None:
    """Test is_v3 and read_community on v1, v2c, v3 and broken messages."""
    assert read_community(SEED_V1) == (0, b"public")
    assert read_community(LINK_DOWN) == (1, b"public")
    v3 = b"\x30\x03\x02\x01\x03"
    assert is_v3(v3)
    assert not is_v3(LINK_DOWN)
    assert not is_v3(b"\x30")
    with pytest.raises(BerError, match="SNMP version 3 is not v1 or v2c"):
        read_community(v3)
    with pytest.raises(BerError):
        read_community(b"\x30\x05\x02\x01\x01\x04\x09")
