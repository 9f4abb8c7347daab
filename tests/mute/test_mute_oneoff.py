"""One-off windows made through the API: validation, ending early, records."""

from __future__ import annotations

import pytest

from tocsin.mute import LATEST
from tocsin.mute.matchers import parse_matchers
from tocsin.mute.oneoff import OneOffWindow, WindowError
from tocsin.yamlsrc import Mark

NOW = 1_795_564_800.0
HOST = parse_matchers(["host=web1"], Mark("test", 1, 1))


def make(start: float, end: float, **kw: object) -> OneOffWindow:
    """A window from NOW-relative times."""
    return OneOffWindow.create(
        name="w", matchers=HOST, start=NOW + start, end=NOW + end, created_by="al",
        comment="c", now=NOW, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_ending_a_pending_window_cancels_it() -> None:
    """Test that a window ended before it began never mutes and still round-trips."""
    ended = make(3600, 7200).end_now(NOW + 10)
    assert ended.state(NOW + 5000) == "ended"
    assert ended.window is None
    assert OneOffWindow.from_dict(ended.to_dict()) == ended
    with pytest.raises(WindowError, match="has already ended"):
        ended.end_now(NOW + 20)


def test_ending_an_active_window_ends_it_now() -> None:
    """Test that an active window ended early mutes until then only."""
    ended = make(0, 7200).end_now(NOW + 100)
    assert ended.window is not None
    assert (ended.window.active(NOW + 99), ended.window.active(NOW + 100)) == (True, False)


def test_far_future_ends_are_refused() -> None:
    """Test that a window past the year 9999 is refused: its reason could not be shown."""
    with pytest.raises(WindowError, match="before the year 10000"):
        make(0, LATEST)


def test_the_reminder_is_due_once_in_its_span() -> None:
    """Test remind_before: due from end - remind_before until the end, not after reminding."""
    window = make(0, 600, remind_before=60.0)
    assert not window.reminder_due(NOW + 539)
    assert window.reminder_due(NOW + 540)
    assert not window.reminder_due(NOW + 600)
