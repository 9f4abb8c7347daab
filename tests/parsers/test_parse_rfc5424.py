"""RFC 5424 lines, starting with the examples of RFC 5424 section 6.5."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest

from tocsin.model import Severity
from tocsin.parsers import make_parser
from tocsin.parsers.rfc5424 import parse_structured_data


def test_rfc_example_1_bom_and_nil_sd(utc: Callable[..., float], received: float) -> None:
    """Test that example 1 parses with its BOM stripped and NILVALUEs left out of fields."""
    parser = make_parser("rfc5424", origin="x")
    event = parser(
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 -"
        " \ufeff'su root' failed for lonvick on /dev/pts/8",
        received,
    )
    assert event.time == pytest.approx(utc(2003, 10, 11, 22, 14, 15, 3000), abs=1e-6)
    assert (event.host, event.program, event.level) == ("mymachine.example.com", "su", "crit")
    assert event.severity == Severity.EXCEPTION
    assert event.message == "'su root' failed for lonvick on /dev/pts/8"
    assert event.fields == {"facility": "auth", "msgid": "ID47"}
    assert parser.errors == 0


def test_rfc_example_2_offset_and_microseconds(utc: Callable[..., float], received: float) -> None:
    """Test that example 2's -07:00 offset and microsecond fraction give the right instant."""
    parser = make_parser("rfc5424", origin="x")
    event = parser(
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - -"
        " %% It's time to make the do-nuts.",
        received,
    )
    assert event.time == pytest.approx(utc(2003, 8, 24, 12, 14, 15, 3), abs=1e-6)
    assert (event.host, event.program, event.level) == ("192.0.2.1", "myproc", "notice")
    assert event.message == "%% It's time to make the do-nuts."
    assert event.fields == {"facility": "local4", "procid": "8710"}


def test_rfc_example_3_structured_data(received: float) -> None:
    """Test that example 3's SD element lands in fields["sd"] by SD-ID and param."""
    parser = make_parser("rfc5424", origin="x")
    event = parser(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473"
        ' iut="3" eventSource="Application" eventID="1011"]'
        " \ufeffAn application event log entry...",
        received,
    )
    assert event.fields["sd"] == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"}
    }
    assert event.message == "An application event log entry..."
    assert event.program == "evntslog"


def test_rfc_example_4_two_elements_no_message(received: float) -> None:
    """Test that example 4's two SD elements parse and the missing MSG is empty."""
    parser = make_parser("rfc5424", origin="x")
    event = parser(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473"
        ' iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]',
        received,
    )
    assert event.fields["sd"] == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
        "examplePriority@32473": {"class": "high"},
    }
    assert event.message == ""
    assert parser.errors == 0


def test_all_nil_header(received: float) -> None:
    """Test that a header of NILVALUEs gives the read time, empty host/program and no fields."""
    parser = make_parser("rfc5424", origin="x")
    event = parser("<0>1 - - - - - -", received)
    assert (event.time, event.host, event.program, event.message) == (received, "", "", "")
    assert (event.level, event.fields) == ("emerg", {"facility": "kern"})
    assert parser.errors == 0


def test_escapes_in_param_values() -> None:
    """Test that \\", \\\\ and \\] are unescaped and any other backslash is kept."""
    sd = r'[x@1 quote="say \"hi\"" slash="C:\\dir" bracket="[a\]" other="tab\t" empty=""]'
    assert parse_structured_data(sd) == {
        "x@1": {
            "quote": 'say "hi"',
            "slash": "C:\\dir",
            "bracket": "[a]",
            "other": "tab\\t",
            "empty": "",
        }
    }


def test_sd_value_with_brackets_and_spaces(received: float) -> None:
    """Test that an escaped ] and spaces inside a value do not end the element or the SD."""
    parser = make_parser("rfc5424", origin="x")
    event = parser(
        r'<14>1 2026-11-25T18:30:21+01:00 h app 1 m [meta@1 q="a \"b\" [c\] d=\"e\""] tail',
        received,
    )
    assert event.fields["sd"] == {"meta@1": {"q": 'a "b" [c] d="e"'}}
    assert event.message == "tail"


def test_element_without_params(received: float) -> None:
    """Test that an SD element with no params becomes an empty mapping."""
    parser = make_parser("rfc5424", origin="x")
    event = parser("<14>1 2026-11-25T18:30:21Z h app - - [timeQuality] up", received)
    assert event.fields["sd"] == {"timeQuality": {}}


@pytest.mark.parametrize(
    "line",
    [
        "<34>1 garbage",
        '<34>1 2003-10-11T22:14:15.003Z host app - - [unclosed x="1" hello',
        "<34>1 2003-10-11T22:14:15.003Z host app - - [x@1 unquoted=1] msg",
        '<34>1 2003-10-11T22:14:15.003Z host app - - [x@1 a="1"]no-space',
        "<34>1 2003-10-11T22:14:15.003Z host app - - nosd msg",
        "<34>1 2003-02-30T22:14:15Z host app - - - impossible date",
        "<192>1 2003-10-11T22:14:15Z host app - - - bad pri",
        "<34>2 2003-10-11T22:14:15Z host app - - - version 2",
        "<34>Oct 11 22:14:15 mymachine su: this is RFC 3164",
    ],
)
def test_malformed_lines_are_errors(line: str, received: float) -> None:
    """Test that lines breaking the RFC 5424 grammar become plain events and count."""
    parser = make_parser("rfc5424", origin="x")
    event = parser(line, received)
    assert (event.message, event.time, event.fields) == (line, received, {})
    assert parser.errors == 1


def test_stamp_without_offset_is_local_to_tz(utc: Callable[..., float], received: float) -> None:
    """Test that a (non-conforming) stamp without offset is read in the configured zone."""
    parser = make_parser("rfc5424", origin="x", tz=ZoneInfo("Europe/Berlin"))
    event = parser("<14>1 2026-07-01T12:00:00 h app - - - m", received)
    assert event.time == utc(2026, 7, 1, 10)


def test_repeated_param_keeps_the_last_value() -> None:
    """Test that a param repeated inside one element keeps its last value."""
    assert parse_structured_data('[x@1 ip="192.0.2.1" ip="192.0.2.2"]') == {
        "x@1": {"ip": "192.0.2.2"}
    }
