"""Recognizing resent QoS 1 messages (Redeliveries) and repeated identities (RecentKeys)."""

from __future__ import annotations

import pytest

from tocsin.mqtt.redelivery import RecentKeys, Redeliveries


def test_a_flagged_resend_of_a_taken_message_is_repeated() -> None:
    """Test that the same topic, packet id and payload flagged as a resend is recognized."""
    seen = Redeliveries()
    assert not seen.repeated("a/b", 7, b"x", False)
    assert seen.repeated("a/b", 7, b"x", True)
    assert seen.repeated("a/b", 7, b"x", True)  # a second resend too
    assert len(seen) == 1


def test_a_flagged_message_never_taken_is_new() -> None:
    """Test that a resend flag alone does not make a duplicate (mosquitto flags queued ones)."""
    seen = Redeliveries()
    assert not seen.repeated("a/b", 7, b"x", True)
    assert seen.repeated("a/b", 7, b"x", True)


def test_an_unflagged_repeat_is_a_new_message() -> None:
    """Test that a reused packet id with the same content but no resend flag is kept."""
    seen = Redeliveries()
    assert not seen.repeated("a/b", 7, b"x", False)
    assert not seen.repeated("a/b", 7, b"x", False)
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("topic", "mid", "payload"), [("a/c", 7, b"x"), ("a/b", 8, b"x"), ("a/b", 7, b"y")]
)
def test_every_part_of_the_identity_counts(topic: str, mid: int, payload: bytes) -> None:
    """Test that a resend differing in topic, packet id or payload is not the taken message."""
    seen = Redeliveries()
    seen.repeated("a/b", 7, b"x", False)
    assert not seen.repeated(topic, mid, payload, True)


def test_the_window_forgets_the_oldest_first() -> None:
    """Test eviction: with room for two, the first message is forgotten when a third comes."""
    seen = Redeliveries(size=2)
    for mid in (1, 2, 3):
        assert not seen.repeated("t", mid, b"p", False)
    assert len(seen) == 2
    assert not seen.repeated("t", 1, b"p", True)  # forgotten: new again, and remembered
    assert seen.repeated("t", 3, b"p", True)
    assert not seen.repeated("t", 2, b"p", True)  # pushed out by 1 coming back


def test_the_window_needs_room() -> None:
    """Test that a window of no messages is refused."""
    with pytest.raises(ValueError, match="at least 1"):
        Redeliveries(size=0)


def test_recent_keys_expire_after_the_window() -> None:
    """Test that a key repeats within `window` seconds of its first sight, not after."""
    recent = RecentKeys(window=10.0)
    assert not recent.repeated("k", 100.0)
    assert recent.repeated("k", 109.9)
    assert not recent.repeated("k", 110.0)  # expired, and remembered from now
    assert recent.repeated("k", 119.0)
    assert len(recent) == 1


def test_recent_keys_keep_at_most_size() -> None:
    """Test that the oldest key goes when more than `size` are remembered."""
    recent = RecentKeys(window=60.0, size=2)
    for key in ("a", "b", "c"):
        recent.repeated(key, 1.0)
    assert len(recent) == 2
    assert not recent.repeated("a", 2.0)
    assert recent.repeated("c", 2.0)


def test_recent_keys_survive_entries_and_restore() -> None:
    """Test carrying keys across a restart: saved entries repeat until they expire."""
    before = RecentKeys(window=10.0)
    before.repeated("a", 1.0)
    before.repeated("b", 5.0)
    after = RecentKeys(window=10.0)
    after.restore(before.entries())
    assert before.entries() == [("a", 1.0), ("b", 5.0)]
    assert after.repeated("b", 12.0)
    assert not after.repeated("a", 12.0)  # 11 seconds old: expired


@pytest.mark.parametrize(("window", "size"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_recent_keys_need_a_window_and_room(window: float, size: int) -> None:
    """Test that a non-positive window or no room is refused."""
    with pytest.raises(ValueError, match="window must be positive"):
        RecentKeys(window, size)


def test_forgotten_messages_and_keys_are_new_again() -> None:
    """Test that a batch whose events were lost can be taken again when it is resent."""
    seen = Redeliveries()
    assert not seen.repeated("a/b", 7, b"x", False)
    seen.forget([("a/b", 7, b"x")])
    assert not seen.repeated("a/b", 7, b"x", True)
    keys = RecentKeys(window=60.0)
    assert not keys.repeated("k", 1.0)
    keys.forget("k")
    assert not keys.repeated("k", 2.0)
    assert keys.repeated("k", 3.0)
    assert keys.entries() == [("k", 2.0)]
    assert keys.repeated("k", 61.5)  # the forgotten 1.0 entry expired; the 2.0 one holds
    assert not keys.repeated("k", 62.5)  # and now that one expired too
