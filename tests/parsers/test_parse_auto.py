"""The auto parser: format chosen per line, errors only for lines that broke their format."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC

import pytest

from tocsin.parsers import make_parser


def test_each_format_is_recognized(utc: Callable[..., float], received: float) -> None:
    """Test that one auto parser handles JSON, RFC 5424, both syslog stamps and plain text."""
    parser = make_parser("auto", origin="x", year=2026, tz=UTC)
    json_event = parser('{"msg": "from json", "level": "error", "ts": 1764095421}', received)
    ietf = parser("<165>1 2003-10-11T22:14:15.003Z h evntslog - ID47 - from 5424", received)
    bsd = parser("<34>Oct 11 22:14:15 mymachine su: from 3164", received)
    iso = parser("2026-11-25T18:30:21.5Z web1 app[9]: from rsyslog", received)
    text = parser("Traceback (most recent call last):", received)
    assert [e.message for e in (json_event, ietf, bsd, iso, text)] == [
        "from json",
        "from 5424",
        "from 3164",
        "from rsyslog",
        "Traceback (most recent call last):",
    ]
    assert (json_event.level, ietf.fields["msgid"], bsd.program) == ("err", "ID47", "su")
    assert iso.time == utc(2026, 11, 25, 18, 30, 21, 500000)
    assert (text.time, text.host, text.program) == (received, "", "")
    assert parser.errors == 0


@pytest.mark.parametrize(
    "line",
    ['{"unterminated": ', "{not json at all", "<34>1 broken header", "<13>1 2003-10-11 h a - - -"],
)
def test_announced_format_that_fails_is_an_error(line: str, received: float) -> None:
    """Test that a line starting like JSON or RFC 5424 but not parsing counts as an error."""
    parser = make_parser("auto", origin="x")
    event = parser(line, received)
    assert (event.message, event.time) == (line, received)
    assert parser.errors == 1


@pytest.mark.parametrize(
    "line",
    ["", "plain words", "<html>", "<34>not a stamp", "2026-11-25 started", "Nov 99 bogus"],
)
def test_plain_text_is_no_error(line: str, received: float) -> None:
    """Test that text that never claimed a format becomes a plain event without an error."""
    parser = make_parser("auto", origin="x")
    event = parser(line, received)
    assert event.message == line
    assert parser.errors == 0


def test_year_state_is_kept_across_lines(utc: Callable[..., float], received: float) -> None:
    """Test that auto follows BSD stamps across New Year like the syslog parser does."""
    parser = make_parser("auto", origin="x", year=2025, tz=UTC)
    times = [
        parser(line, received).time
        for line in ("Dec 31 23:59:59 h a: x", '{"msg": "between"}', "Jan  1 00:00:00 h a: y")
    ]
    assert (times[0], times[2]) == (utc(2025, 12, 31, 23, 59, 59), utc(2026, 1, 1))
