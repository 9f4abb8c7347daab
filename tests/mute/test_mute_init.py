"""The package's shared parts: the decision record and how times are shown in reasons."""

from __future__ import annotations

import dataclasses

import pytest

from tocsin.mute import MuteDecision, format_time


def test_format_time_is_utc_with_z() -> None:
    """Test that reasons show times as ISO 8601 UTC to the second, with a Z."""
    assert format_time(1_795_564_800.0) == "2026-11-25T00:00:00Z"
    assert format_time(1_795_564_800.9) == "2026-11-25T00:00:00Z"


def test_decisions_are_frozen_values() -> None:
    """Test that a decision is immutable and compares by value, so it can be recorded as is."""
    decision = MuteDecision(kind="inhibit", name="host-down:web1", reason="inhibited by x")
    assert decision.until is None
    assert decision == MuteDecision(kind="inhibit", name="host-down:web1", reason="inhibited by x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        decision.reason = "other"  # type: ignore[misc]
