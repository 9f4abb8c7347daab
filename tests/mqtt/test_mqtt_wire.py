"""The PUBLISH splitter: what it takes it decodes exactly; everything else it leaves to paho."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.mqtt.wire import split_publish


def varint(n: int) -> bytes:
    """MQTT's remaining-length encoding."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish(
    topic: bytes,
    payload: bytes,
    *,
    qos: int = 1,
    mid: int = 7,
    dup: bool = False,
    retain: bool = False,
    properties: bytes | None = None,
) -> bytes:
    """Encode one PUBLISH; `properties` given means MQTT 5 (b"" for none)."""
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    if properties is not None:
        body += varint(len(properties)) + properties
    body += payload
    header = 0x30 | (dup << 3) | (qos << 1) | retain
    return bytes([header]) + varint(len(body)) + body


@given(
    topic=st.binary(min_size=1, max_size=300),
    payload=st.binary(max_size=20_000),
    qos=st.sampled_from([0, 1]),
    mid=st.integers(1, 65535),
    dup=st.booleans(),
    retain=st.booleans(),
    v5=st.booleans(),
    before=st.binary(max_size=8),
)
def test_round_trip(
    *,
    topic: bytes,
    payload: bytes,
    qos: int,
    mid: int,
    dup: bool,
    retain: bool,
    v5: bool,
    before: bytes,
) -> None:
    """Test that an encoded packet comes back whole, from any position, and a cut one not."""
    packet = publish(
        topic, payload, qos=qos, mid=mid, dup=dup, retain=retain, properties=b"" if v5 else None
    )
    buf = before + packet + b"\x30"  # the start of a next packet follows
    found = split_publish(buf, len(before), v5=v5)
    assert found is not None
    end, header, got_topic, got_mid, got_payload = found
    assert end == len(before) + len(packet)
    assert (header >> 1) & 3 == qos
    assert bool(header & 8) == dup
    assert bool(header & 1) == retain
    assert (got_topic, got_mid if qos else 0, got_payload) == (topic, mid if qos else 0, payload)
    for cut in (1, 2, len(packet) // 2, len(packet) - 1):
        assert split_publish(before + packet[:cut], len(before), v5=v5) is None


@pytest.mark.parametrize(
    ("packet", "v5", "why"),
    [
        (publish(b"t", b"x", properties=b"\x23\x00\x01"), True, "a topic alias: paho's"),
        (publish(b"t", b"x", properties=b"\x01\x01"), True, "any property"),
        (publish(b"", b"x", properties=b""), True, "an empty topic"),
        (publish(b"t", b"x", qos=2), False, "QoS 2"),
        (bytes([0x36]) + publish(b"t", b"x")[1:], False, "QoS 3"),
        (publish(b"t", b"x", mid=0), False, "packet id 0"),
        (b"\x40\x02\x00\x01", False, "a PUBACK"),
        (b"\xd0\x00", False, "a PINGRESP"),
        (b"\x30\xff\xff\xff\xff\x7f", False, "a remaining length of 5 bytes"),
        (b"\x31\x01\x00", False, "shorter than its topic length"),
        (b"\x30\x05\x00\x09abc", False, "a topic longer than the packet"),
        (publish(b"t", b"", qos=1)[:-2] + b"", False, "no room for the packet id"),
        (b"", False, "nothing"),
    ],
)
def test_left_to_paho(packet: bytes, v5: bool, why: str) -> None:
    """Test that what is not a whole, plain QoS 0/1 PUBLISH is not taken."""
    assert split_publish(packet, 0, v5=v5) is None, why


def test_a_stream_of_packets() -> None:
    """Test that packets back to back split one after another, then stop at the cut one."""
    packets = [publish(f"s/{n}".encode(), bytes(n), mid=n + 1) for n in range(200)]
    buf = b"".join(packets) + packets[0][:3]
    pos, got = 0, []
    while (found := split_publish(buf, pos, v5=False)) is not None:
        pos = found[0]
        got.append((found[2], found[3], len(found[4])))
    assert got == [(f"s/{n}".encode(), n + 1, n) for n in range(200)]
    assert pos == len(buf) - 3
