"""BSD syslog (RFC 3164) lines as real daemons and rsyslog write them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from zoneinfo import ZoneInfo

import pytest

from tocsin.model import Severity
from tocsin.parsers import make_parser

_REAL_WORLD = [
    # line, then (host, program, pid or None, message)
    (
        "Nov 25 18:30:21 bastion sshd[28104]: Failed password for invalid user admin"
        " from 203.0.113.45 port 52811 ssh2",
        (
            "bastion",
            "sshd",
            "28104",
            "Failed password for invalid user admin from 203.0.113.45 port 52811 ssh2",
        ),
    ),
    (
        "Nov 25 18:30:21 web1 CRON[30012]: (root) CMD (   cd / && run-parts --report"
        " /etc/cron.hourly)",
        ("web1", "CRON", "30012", "(root) CMD (   cd / && run-parts --report /etc/cron.hourly)"),
    ),
    (
        "Nov 25 18:30:21 web1 kernel: [123456.789012] Out of memory: Killed process 4242 (java)",
        ("web1", "kernel", None, "[123456.789012] Out of memory: Killed process 4242 (java)"),
    ),
    (
        "Nov 25 18:30:21 web1 systemd[1]: nginx.service: Main process exited, code=exited",
        ("web1", "systemd", "1", "nginx.service: Main process exited, code=exited"),
    ),
    (
        "Nov 25 18:30:21 mx1 postfix/smtpd[1912]: NOQUEUE: reject: RCPT from"
        " unknown[198.51.100.7]: 554 5.7.1 <spam@example.com>: Relay access denied",
        (
            "mx1",
            "postfix/smtpd",
            "1912",
            "NOQUEUE: reject: RCPT from unknown[198.51.100.7]:"
            " 554 5.7.1 <spam@example.com>: Relay access denied",
        ),
    ),
    (
        "Nov 25 18:30:21 web1 systemd-logind[812]: New session 4711 of user deploy.",
        ("web1", "systemd-logind", "812", "New session 4711 of user deploy."),
    ),
    (
        "Nov 25 18:30:21 web1 last message repeated 3 times",
        ("web1", "", None, "last message repeated 3 times"),
    ),
    (
        "Nov 25 18:30:21 fe80::1 ntpd[77]: kernel reports TIME_ERROR",
        ("fe80::1", "ntpd", "77", "kernel reports TIME_ERROR"),
    ),
    (
        "Nov 25 18:30:21 web1 sudo:   alice : TTY=pts/0 ; COMMAND=/bin/ls",
        ("web1", "sudo", None, "  alice : TTY=pts/0 ; COMMAND=/bin/ls"),
    ),
    ("Nov 25 18:30:21 web1 app:", ("web1", "app", None, "")),
]


@pytest.mark.parametrize(("line", "expected"), _REAL_WORLD)
def test_real_world_lines(
    line: str,
    expected: tuple[str, str, str | None, str],
    utc: Callable[..., float],
    received: float,
) -> None:
    """Test that daemon lines split into host, program, pid and message at the right places."""
    host, program, pid, message = expected
    parser = make_parser("syslog", origin="x", year=2026, tz=UTC)
    event = parser(line, received)
    assert (event.host, event.program, event.message) == (host, program, message)
    assert event.fields == ({} if pid is None else {"pid": pid})
    assert event.time == utc(2026, 11, 25, 18, 30, 21)
    assert event.level == "info"
    assert parser.errors == 0


def test_space_padded_and_zero_padded_days(utc: Callable[..., float], received: float) -> None:
    """Test that "Nov  5", "Nov 05" and "Nov 5" are all the fifth."""
    parser = make_parser("syslog", origin="x", year=2026, tz=UTC)
    times = {parser(f"Nov {day} 08:09:10 h p: m", received).time for day in (" 5", "05", "5")}
    assert times == {utc(2026, 11, 5, 8, 9, 10)}
    assert parser.errors == 0


def test_rfc3164_example_with_pri(utc: Callable[..., float], received: float) -> None:
    """Test that RFC 3164's own example maps PRI 34 to auth/crit and an exception."""
    parser = make_parser("syslog", origin="x", year=2003, tz=UTC)
    event = parser(
        "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8", received
    )
    assert (event.host, event.program, event.level) == ("mymachine", "su", "crit")
    assert event.severity == Severity.EXCEPTION
    assert event.fields == {"facility": "auth"}
    assert event.message == "'su root' failed for lonvick on /dev/pts/8"
    assert event.time == utc(2003, 10, 11, 22, 14, 15)


def test_rfc3164_example_without_tag(received: float) -> None:
    """Test that RFC 3164's tagless example keeps its whole text as the message."""
    parser = make_parser("syslog", origin="x", year=2026, tz=UTC)
    event = parser("<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!", received)
    assert (event.host, event.program, event.message) == ("10.0.0.99", "", "Use the BFG!")
    assert (event.level, event.fields) == ("notice", {"facility": "user"})


@pytest.mark.parametrize(
    ("pri", "level", "facility", "severity"),
    [
        ("0", "emerg", "kern", Severity.EXCEPTION),
        ("9", "alert", "user", Severity.EXCEPTION),
        ("34", "crit", "auth", Severity.EXCEPTION),
        ("27", "err", "daemon", Severity.EXCEPTION),
        ("12", "warning", "user", Severity.WARNING),
        ("13", "notice", "user", Severity.INFORMATIONAL),
        ("38", "info", "auth", Severity.INFORMATIONAL),
        ("87", "debug", "authpriv", Severity.INFORMATIONAL),
        ("78", "info", "cron", Severity.INFORMATIONAL),
        ("128", "emerg", "local0", Severity.EXCEPTION),
        ("191", "debug", "local7", Severity.INFORMATIONAL),
    ],
)
def test_pri_maps_to_level_facility_and_itil_severity(
    pri: str, level: str, facility: str, severity: Severity, received: float
) -> None:
    """Test that PRI severity gives the level (and so the ITIL class) and PRI facility a keyword."""
    parser = make_parser("syslog", origin="x", year=2026, tz=UTC)
    event = parser(f"<{pri}>Nov 25 18:30:21 web1 app[1]: x", received)
    assert (event.level, event.severity, event.fields["facility"]) == (level, severity, facility)
    assert parser.errors == 0


@pytest.mark.parametrize("pri", ["192", "999", "034", "-1"])
def test_invalid_pri_is_an_error(pri: str, received: float) -> None:
    """Test that a PRI outside 0..191 or with a leading zero does not pass as syslog."""
    parser = make_parser("syslog", origin="x", year=2026, tz=UTC)
    event = parser(f"<{pri}>Nov 25 18:30:21 web1 app[1]: x", received)
    assert event.message == f"<{pri}>Nov 25 18:30:21 web1 app[1]: x"
    assert parser.errors == 1


def test_rsyslog_high_precision_stamp(utc: Callable[..., float], received: float) -> None:
    """Test that rsyslog's RFC 3339 stamp keeps its fraction and offset, whatever tz says."""
    parser = make_parser("syslog", origin="x", tz=ZoneInfo("America/New_York"))
    event = parser(
        "2026-11-25T18:30:21.123456+01:00 web1 sshd[28104]: Accepted publickey for deploy",
        received,
    )
    assert event.time == pytest.approx(utc(2026, 11, 25, 17, 30, 21, 123456), abs=1e-6)
    assert (event.host, event.program, event.message) == (
        "web1",
        "sshd",
        "Accepted publickey for deploy",
    )
    assert event.fields == {"pid": "28104"}


def test_rsyslog_stamp_without_offset_is_local_to_tz(
    utc: Callable[..., float], received: float
) -> None:
    """Test that an RFC 3339 stamp without offset is read in the configured zone."""
    parser = make_parser("syslog", origin="x", tz=ZoneInfo("Europe/Berlin"))
    event = parser("2026-07-01T12:00:00 web1 app: up", received)
    assert event.time == utc(2026, 7, 1, 10)


def test_bsd_stamps_are_local_to_tz_across_dst(utc: Callable[..., float], received: float) -> None:
    """Test that BSD stamps are read in tz with the offset in force on that day (CET vs CEST)."""
    parser = make_parser("syslog", origin="x", year=2026, tz=ZoneInfo("Europe/Berlin"))
    summer = parser("Jul  1 12:00:00 h app: m", received).time
    winter = parser("Dec  1 12:00:00 h app: m", received).time
    assert (summer, winter) == (utc(2026, 7, 1, 10), utc(2026, 12, 1, 11))


def test_trailing_carriage_return_is_stripped(received: float) -> None:
    """Test that a CRLF file's "\\r" does not end up in the message."""
    parser = make_parser("syslog", origin="x", year=2026, tz=UTC)
    assert parser("Nov 25 18:30:21 h app: done\r", received).message == "done"


@pytest.mark.parametrize(
    "line",
    [
        "",
        "hello world",
        "Foo 25 18:30:21 web1 app: unknown month",
        "Nov 25 25:61:61 web1 app: impossible clock",
        "Feb 30 12:00:00 web1 app: no such day",
        "Nov 25 18:30:21",
        "2026-13-01T00:00:00Z web1 app: no such month",
        "2026-11-25T18:30:21+99:00 web1 app: no such offset",
    ],
)
def test_lines_that_are_not_syslog_count_as_errors(line: str, received: float) -> None:
    """Test that lines without a valid stamp and host become plain events and count."""
    parser = make_parser("syslog", origin="x", year=2026, tz=UTC)
    event = parser(line, received)
    assert (event.message, event.time) == (line, received)
    assert parser.errors == 1
