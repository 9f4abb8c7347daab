"""Lines with no known structure: the text is the message, the read time is the time."""

from __future__ import annotations

from tocsin.model import Event
from tocsin.parsers.base import LineParser

__all__ = ["PlainParser"]


class PlainParser(LineParser):
    """Takes every line as it is, so it never counts an error."""

    name = "plain"

    def parse(self, line: str, received: float) -> Event:
        """Return the plain event of any line."""
        return self.plain(line, received)
