"""What every line parser shares: the never-raise contract and the plain-event fallback."""

from __future__ import annotations

from abc import ABC, abstractmethod

from tocsin.model import Event

__all__ = ["LineParser"]


class LineParser(ABC):
    """Turns one line into an Event; lines not in the format become plain events and count."""

    name: str  # the kind, also the label of the parse-error metric

    def __init__(self, *, origin: str, source: str) -> None:
        self.origin = origin
        self.source = source
        self.errors = 0

    def __call__(self, line: str, received: float) -> Event:
        """Parse a line read at `received`; never raises, so one odd line cannot stop a source."""
        if line.endswith("\r"):
            line = line[:-1]
        try:
            event = self.parse(line, received)
        except Exception:  # noqa: BLE001 - a parser bug must cost one line, not the source task
            event = None
        if event is None:
            self.errors += 1
            return self.plain(line, received)
        return event

    @abstractmethod
    def parse(self, line: str, received: float) -> Event | None:
        """Return the event of a line in this format, None if the line is not in it."""

    def plain(self, line: str, received: float) -> Event:
        """Return the event of a line whose only known structure is its text."""
        return Event(
            time=received,
            received=received,
            source=self.source,
            origin=self.origin,
            message=line,
        )
