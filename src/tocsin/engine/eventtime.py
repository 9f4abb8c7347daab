"""Event time: where each event goes in its windows, and how far timers may fire.

Windows and timers run on the events' own timestamps, so replaying yesterday's log gives what
live processing gave. The watermark is the newest event time seen. An event up to `lateness`
older than the watermark is placed at its own time; an older one, or one stamped more than
`skew` ahead of the wall clock (a host with a wrong clock), is processed as "now" (the
watermark) and counted. Timers fire once the watermark is more than `lateness` past them
(`horizon`), so an event that arrives up to `lateness` late still counts before they decide.
While input is idle, the daemon moves the watermark on at the wall clock's pace from the last
event, so timers fire without new events.
"""

from __future__ import annotations

import math

__all__ = ["EventTime"]


class EventTime:
    """The engine's notion of now; pure: the wall clock's reading is passed in."""

    __slots__ = ("_anchor", "future", "late", "lateness", "skew", "watermark")

    def __init__(
        self, *, lateness: float, skew: float = math.inf, watermark: float = -math.inf
    ) -> None:
        self.lateness = lateness
        self.skew = skew
        self.watermark = watermark
        self._anchor: tuple[float, float] | None = None  # (event time, wall time then)
        self.late = 0
        self.future = 0

    def place(self, when: float, wall: float) -> float:
        """Return the time to process an event stamped `when` at, moving the watermark."""
        if when > wall + self.skew:
            self.future += 1
            if self.watermark > -math.inf:
                return self.watermark
            when = wall
        watermark = self.watermark
        if when > watermark:
            self.watermark = when
            self._anchor = (when, wall)
            return when
        if when >= watermark - self.lateness:
            return when
        self.late += 1
        return watermark

    def advanced(self, watermark: float, wall: float) -> None:
        """Take the watermark a batch reached by itself (in-order stamps, placed inline)."""
        if watermark > self.watermark:
            self.watermark = watermark
            self._anchor = (watermark, wall)

    def idle(self, wall: float) -> None:
        """Advance the watermark at the wall clock's pace since the last event."""
        anchor = self._anchor
        if anchor is not None:
            self.watermark = max(self.watermark, anchor[0] + (wall - anchor[1]))

    @property
    def horizon(self) -> float:
        """Timers due before this may fire: no event they depend on can still be placed."""
        return self.watermark - self.lateness

    def restore(self, watermark: float, wall: float) -> None:
        """Resume after a restart from the saved watermark, anchored at the restart.

        Time spent down does not count by itself: the lines written meanwhile are still to be
        read, and must find their windows before timers fire past them.
        """
        self.watermark = max(self.watermark, watermark)
        self._anchor = (watermark, wall) if watermark > -math.inf else None
