"""Injectable time: the daemon uses the wall clock, tests and replay move time themselves."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    """Anything that tells the time in epoch seconds."""

    def now(self) -> float:
        """Return the current time."""


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        """Return time.time()."""
        return time.time()


class ManualClock:
    """A clock that only moves when told to (tests, and replay on the lines' own timestamps)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        """Return the time last set."""
        return self._now

    def advance_to(self, when: float) -> None:
        """Move time forward to `when`; never backwards (late events do not rewind it)."""
        self._now = max(self._now, when)
