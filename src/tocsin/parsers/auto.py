"""Format detection per line, for files that mix formats or whose format nobody configured."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import tzinfo

from tocsin.model import Event
from tocsin.parsers.base import LineParser
from tocsin.parsers.jsonl import JsonParser
from tocsin.parsers.rfc3164 import SyslogParser
from tocsin.parsers.rfc5424 import Rfc5424Parser

__all__ = ["AutoParser"]

_RFC5424_HEAD = re.compile(r"<\d{1,3}>1 ")


class AutoParser(LineParser):
    """Picks a format from each line's first characters.

    "{" means JSON, "<digits>1 " means RFC 5424, anything else is tried as BSD syslog and
    otherwise taken as plain text. Only a line that announced JSON or RFC 5424 and then
    failed to parse counts as an error: plain text is a normal outcome here.
    """

    name = "auto"

    def __init__(
        self,
        *,
        origin: str,
        source: str,
        year: int | None,
        tz: tzinfo | None,
        now: Callable[[], float],
    ) -> None:
        super().__init__(origin=origin, source=source)
        self._json = JsonParser(origin=origin, source=source, tz=tz)
        self._rfc5424 = Rfc5424Parser(origin=origin, source=source, tz=tz)
        self._syslog = SyslogParser(origin=origin, source=source, year=year, tz=tz, now=now)

    def parse(self, line: str, received: float) -> Event | None:
        """Return the event in the format the line announces, None if it broke that format."""
        first = line[:1]
        if first == "{":
            return self._json.parse(line, received)
        if first == "<" and _RFC5424_HEAD.match(line):
            return self._rfc5424.parse(line, received)
        event = self._syslog.parse(line, received)
        return self.plain(line, received) if event is None else event
