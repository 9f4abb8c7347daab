"""Recognize a broker sending again a QoS 1 message that was already taken.

After a reconnect (or a broker restart with persistence) the broker resends every QoS 1
message it has no acknowledgement for, flagged as a duplicate and under the same packet
id. Some of them already became events: the acknowledgement was queued behind the commit,
or was in flight when the connection dropped. Those are recognized by (topic, packet id,
payload) among the last `size` QoS 1 messages taken, and skipped. Packet ids are reused
only after 65,535 others, so a match within the window is the same message.

A publisher that resends (its acknowledgement was lost in a broker restart) makes a new
message with a new packet id: only an identity in the payload tells those apart, and a
subscription may name one (`dedupe_key`); `RecentKeys` remembers them for a while.
"""

from __future__ import annotations

from collections import deque

__all__ = ["RecentKeys", "Redeliveries"]


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

    def forget(self, messages: list[tuple[str, int, bytes]]) -> None:
        """Unlearn (topic, mid, payload) of messages whose events were never queued: when
        the broker resends them, they are new."""
        for message in messages:
            self._seen.discard(hash(message))


class RecentKeys:
    """Identities seen within the last `window` seconds (at most `size` of them)."""

    __slots__ = ("_order", "_seen", "_size", "_window")

    def __init__(self, window: float, size: int = 100_000) -> None:
        if window <= 0 or size < 1:
            raise ValueError("window must be positive and size at least 1")
        self._window = window
        self._size = size
        self._seen: dict[str, float] = {}
        self._order: deque[tuple[float, str]] = deque()

    def __len__(self) -> int:
        return len(self._seen)

    def repeated(self, key: str, now: float) -> bool:
        """Whether `key` was seen within the window; if not, remember it from `now`."""
        self._expire(now)
        seen = self._seen
        if key in seen:
            return True
        seen[key] = now
        self._order.append((now, key))
        self._trim()
        return False

    def entries(self) -> list[tuple[str, float]]:
        """Every remembered (key, time), oldest first, to carry across a restart."""
        seen = self._seen
        return [(key, at) for at, key in self._order if seen.get(key) == at]

    def restore(self, entries: list[tuple[str, float]]) -> None:
        """Remember saved (key, time) pairs, oldest first; expired ones go at the next call."""
        for key, at in entries:
            if key not in self._seen:
                self._seen[key] = at
                self._order.append((at, key))
        self._trim()

    def forget(self, key: str) -> None:
        """Unlearn a key whose event was never queued."""
        self._seen.pop(key, None)

    def _trim(self) -> None:
        """Drop the oldest entries beyond `size`."""
        order = self._order
        seen = self._seen
        while len(order) > self._size:
            at, key = order.popleft()
            if seen.get(key) == at:
                del seen[key]

    def _expire(self, now: float) -> None:
        order = self._order
        seen = self._seen
        horizon = now - self._window
        while order and order[0][0] <= horizon:
            at, key = order.popleft()
            if seen.get(key) == at:  # not forgotten and seen again since
                del seen[key]
