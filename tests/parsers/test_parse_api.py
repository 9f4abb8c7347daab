"""The public surface of tocsin.parsers: kinds, the factory and the per-batch error counter."""

from __future__ import annotations

import pytest

from tocsin.model import Event
from tocsin.parsers import PARSER_KINDS, make_parser


@pytest.mark.parametrize("kind", PARSER_KINDS)
def test_make_parser_builds_every_kind(kind: str) -> None:
    """Test that make_parser builds a parser named after its kind with no errors counted yet."""
    parser = make_parser(kind, origin="/var/log/x")
    assert parser.name == kind
    assert parser.errors == 0


def test_unknown_kind_names_the_valid_ones() -> None:
    """Test that an unknown kind raises ValueError listing every valid kind."""
    with pytest.raises(ValueError, match="auto, syslog, rfc5424, json, plain"):
        make_parser("gelf", origin="x")


@pytest.mark.parametrize("year", [0, 10000, -1])
def test_year_outside_the_calendar_is_rejected(year: int) -> None:
    """Test that a replay year datetime cannot represent is refused up front."""
    with pytest.raises(ValueError, match="outside"):
        make_parser("syslog", origin="x", year=year)


@pytest.mark.parametrize("kind", PARSER_KINDS)
def test_event_carries_origin_source_and_received(kind: str, received: float) -> None:
    """Test that every parser stamps origin, source and the read time on its events."""
    parser = make_parser(kind, origin="/var/log/syslog", source="replay")
    event = parser("anything at all", received)
    assert isinstance(event, Event)
    assert (event.origin, event.source, event.received) == ("/var/log/syslog", "replay", received)


def test_plain_takes_the_line_as_it_is(received: float) -> None:
    """Test that the plain parser keeps the whole line, uses the read time and counts nothing."""
    parser = make_parser("plain", origin="x")
    event = parser("Nov 25 18:30:21 web1 sshd[1]: looks like syslog\r", received)
    assert event.message == "Nov 25 18:30:21 web1 sshd[1]: looks like syslog"
    assert (event.time, event.host, event.program, event.level) == (received, "", "", "info")
    assert event.fields == {}
    assert parser.errors == 0


def test_errors_count_per_batch_after_the_caller_resets(received: float) -> None:
    """Test that errors counts failed lines and keeps counting after the caller zeroes it."""
    parser = make_parser("syslog", origin="x", year=2026)
    parser("not syslog", received)
    parser("Nov 25 18:30:21 web1 sshd[1]: fine", received)
    parser("still not syslog", received)
    assert parser.errors == 2
    parser.errors = 0
    parser("nope", received)
    assert parser.errors == 1


@pytest.mark.parametrize("kind", ["syslog", "rfc5424", "json"])
def test_unparsable_line_becomes_a_plain_event(kind: str, received: float) -> None:
    """Test that a line not in the format becomes a plain event with the whole line as message."""
    parser = make_parser(kind, origin="x")
    event = parser("<999>garbage {", received)
    assert (event.message, event.time, event.host, event.program) == (
        "<999>garbage {",
        received,
        "",
        "",
    )
    assert event.fields == {}
    assert parser.errors == 1
