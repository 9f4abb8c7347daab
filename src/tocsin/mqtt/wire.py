"""Split a plain PUBLISH packet out of received bytes: the one packet type that comes by the
thousand, so decoding it here instead of in paho (a dict, a message object and, on MQTT 5,
a properties object per packet) halves the cost of a message.

Only the common case is taken: a complete QoS 0 or 1 PUBLISH with a non-empty topic and,
on MQTT 5, no properties. Anything else (another packet type, a packet cut by the end of
the buffer, QoS 2, properties such as a topic alias) is left where it is for paho.
"""

from __future__ import annotations

__all__ = ["split_publish"]

# (index after the packet, first header byte, topic bytes, packet id (0 for QoS 0), payload)
Publish = tuple[int, int, bytes, int, bytes]


def split_publish(buf: bytes, pos: int, *, v5: bool) -> Publish | None:
    """Return the plain PUBLISH packet that starts at `buf[pos]`, or None to leave it to paho."""
    end = len(buf)
    if pos + 2 > end:
        return None
    header = buf[pos]
    if header & 0xF0 != 0x30 or header & 0x06 > 0x02:  # not a PUBLISH, or QoS 2 / 3
        return None
    # Remaining length: 1 to 4 bytes, 7 bits each, least significant first.
    length = 0
    shift = 0
    at = pos + 1
    while True:
        if at >= end or shift > 21:
            return None
        byte = buf[at]
        at += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    stop = at + length
    if stop > end or length < 2:
        return None
    size = (buf[at] << 8) | buf[at + 1]
    at += 2
    if size == 0 or at + size > stop:
        return None
    topic = buf[at : at + size]
    at += size
    mid = 0
    if header & 0x06:
        if at + 2 > stop:
            return None
        mid = (buf[at] << 8) | buf[at + 1]
        if mid == 0:  # a protocol error: paho says so
            return None
        at += 2
    if v5:
        if at >= stop or buf[at] != 0:  # properties present (or none at all): paho's case
            return None
        at += 1
    return stop, header, topic, mid, buf[at:stop]
