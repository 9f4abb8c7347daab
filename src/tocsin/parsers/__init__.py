"""Log-line parsers: one line of text in, one normalized Event out, for every line read."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import tzinfo
from typing import Protocol

from tocsin.model import Event
from tocsin.parsers.auto import AutoParser
from tocsin.parsers.jsonl import JsonParser
from tocsin.parsers.plain import PlainParser
from tocsin.parsers.rfc3164 import SyslogParser
from tocsin.parsers.rfc5424 import Rfc5424Parser

__all__ = ["PARSER_KINDS", "Parser", "make_parser"]

# "syslog" is RFC 3164 (BSD), including rsyslog's RFC 3339-stamped variant.
PARSER_KINDS: tuple[str, ...] = ("auto", "syslog", "rfc5424", "json", "plain")


class Parser(Protocol):
    """What a source calls per line; it reads and resets `errors` once per batch."""

    name: str
    errors: int  # lines not in the format; they still became plain events

    def __call__(self, line: str, received: float) -> Event:
        """Return the event of one line (no trailing newline) read at `received`; never raises."""
        ...


def make_parser(
    kind: str,
    *,
    origin: str,
    source: str = "log",
    year: int | None = None,
    tz: tzinfo | None = None,
    now: Callable[[], float] = time.time,
) -> Parser:
    """Return a fresh parser of `kind`; BSD stamps get `year` (else one guessed from `now()`)."""
    if year is not None and not 1 <= year <= 9999:
        raise ValueError(f"year {year} is outside 1..9999")
    if kind == "auto":
        return AutoParser(origin=origin, source=source, year=year, tz=tz, now=now)
    if kind == "syslog":
        return SyslogParser(origin=origin, source=source, year=year, tz=tz, now=now)
    if kind == "rfc5424":
        return Rfc5424Parser(origin=origin, source=source, tz=tz)
    if kind == "json":
        return JsonParser(origin=origin, source=source, tz=tz)
    if kind == "plain":
        return PlainParser(origin=origin, source=source)
    raise ValueError(f"unknown parser kind {kind!r}; valid kinds: {', '.join(PARSER_KINDS)}")
