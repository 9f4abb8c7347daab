"""No input may raise: arbitrary text, binary junk and near-misses of every format."""

from __future__ import annotations

from datetime import UTC

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tocsin.model import Event
from tocsin.parsers import PARSER_KINDS, make_parser
from tocsin.parsers.auto import AutoParser
from tocsin.parsers.base import LineParser
from tocsin.parsers.jsonl import JsonParser
from tocsin.parsers.plain import PlainParser
from tocsin.parsers.rfc3164 import SyslogParser
from tocsin.parsers.rfc5424 import Rfc5424Parser

_PREFIXES = st.sampled_from(
    [
        "",
        "<34>",
        "<165>1 ",
        "<165>1 2003-10-11T22:14:15.003Z ",
        "<165>1 - h a - - [x@1 ",
        "Nov 25 18:30:21 ",
        "Feb 29 00:00:00 web1 ",
        "Dec 31 23:59:59 h p[",
        "2026-11-25T18:30:21.5+01:00 ",
        '{"time": ',
        '{"level": ',
        "{",
    ]
)
_LINES = st.one_of(st.text(), st.builds(lambda head, tail: head + tail, _PREFIXES, st.text()))


def _format_parsers() -> list[LineParser]:
    """Return one parser of every format, so parse() itself can be checked for exceptions."""
    common = {"origin": "x", "source": "log"}
    now = 1_767_139_200.0  # 2025-12-31, so stamps near New Year are exercised
    return [
        SyslogParser(**common, year=None, tz=UTC, now=lambda: now),
        SyslogParser(**common, year=2025, tz=None, now=lambda: now),
        Rfc5424Parser(**common, tz=UTC),
        JsonParser(**common, tz=None),
        AutoParser(**common, year=None, tz=UTC, now=lambda: now),
        PlainParser(**common),
    ]


@given(lines=st.lists(_LINES, max_size=8))
def test_parse_never_raises(lines: list[str]) -> None:
    """Test that no format's parse() raises on arbitrary text, so the safety net stays unused."""
    for parser in _format_parsers():
        for line in lines:
            event = parser.parse(line, 1.0)
            assert event is None or isinstance(event, Event)


@given(line=_LINES, kind=st.sampled_from(PARSER_KINDS))
def test_call_always_returns_an_event(line: str, kind: str) -> None:
    """Test that calling any parser on arbitrary text returns an Event with a str message."""
    parser = make_parser(kind, origin="x", tz=UTC)
    event = parser(line, 1.0)
    assert isinstance(event, Event)
    assert isinstance(event.message, str)
    assert parser.errors in (0, 1)


@pytest.mark.parametrize("kind", PARSER_KINDS)
@pytest.mark.parametrize(
    "line",
    [
        "",
        "\r",
        "\x00\x01\x02\xff\ufffd",
        "\ufeff",
        "<",
        "<>",
        "<999999999999>",
        "{" * 10_000,
        "[" * 10_000,
        "\n\n",
        "x" * 100_000,
    ],
)
def test_junk_never_raises(kind: str, line: str) -> None:
    """Test that binary junk, huge and deeply nested lines give an Event from every parser."""
    event = make_parser(kind, origin="x")(line, 1.0)
    assert isinstance(event, Event)
    assert event.message == line.removesuffix("\r")
