"""Recognize a broker sending again a QoS 1 message that was already taken.

After a reconnect (or a broker restart with persistence) the broker resends every QoS 1
message it has no acknowledgement for, flagged as a duplicate and under the same packet
id. Some of them already became events: the acknowledgement was queued behind the commit,
or was in flight when the connection dropped. Those are recognized by (topic, packet id,
payload) among the last `size` QoS 1 messages taken, and skipped. Packet ids are reused
only after 65,535 others, so a match within the window is the same message.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Redeliveries"]


class Redeliveries:
    """The identities of recently taken QoS 1 messages, oldest forgotten first."""

    __slots__ = ("_order", "_seen", "_size")

    def __init__(self, size: int = 65536) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._size = size
        self._seen: set[int] = set()
        self._order: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._order)

    def repeated(self, topic: str, mid: int, payload: bytes, dup: bool) -> bool:
        """Whether this is a resend of a message taken before; if not, remember it."""
        key = hash((topic, mid, payload))
        seen = self._seen
        if key in seen:
            # Not flagged as resent: a new message that repeats an old one's id and content.
            return dup
        seen.add(key)
        order = self._order
        order.append(key)
        if len(order) > self._size:
            seen.discard(order.popleft())
        return False
