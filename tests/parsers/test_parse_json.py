"""JSON lines from application loggers (pino, zap, logstash, python-json-logger)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tocsin.model import Severity
from tocsin.parsers import make_parser

_DEEP = '{"a":' * 5000 + "1" + "}" * 5000  # valid JSON, nested past the recursion limit


def _event_of(record: dict[str, Any], received: float) -> Any:
    """Return the event of one JSON-encoded record, parsed with a UTC json parser."""
    return make_parser("json", origin="x", tz=UTC)(json.dumps(record), received)


def test_pino_line(utc: Callable[..., float], received: float) -> None:
    """Test that a pino line maps numeric level 50, epoch ms, hostname and msg."""
    line = (
        '{"level":50,"time":1764095421123,"pid":7,"hostname":"web1","name":"api",'
        '"msg":"request failed","req":{"id":42,"url":"/v1/orders"}}'
    )
    parser = make_parser("json", origin="x")
    event = parser(line, received)
    assert event.time == pytest.approx(1764095421.123)
    assert (event.host, event.level, event.message) == ("web1", "err", "request failed")
    assert event.severity == Severity.EXCEPTION
    assert event.fields == json.loads(line)
    assert parser.errors == 0


def test_zap_line(received: float) -> None:
    """Test that a zap line maps ts in float seconds, logger and a lower-case level."""
    event = _event_of(
        {
            "level": "warn",
            "ts": 1764095421.5,
            "logger": "billing",
            "caller": "pay.go:12",
            "msg": "retrying",
        },
        received,
    )
    assert (event.time, event.program, event.level) == (1764095421.5, "billing", "warning")
    assert event.fields["caller"] == "pay.go:12"


def test_logstash_line(utc: Callable[..., float], received: float) -> None:
    """Test that @timestamp, host and message (logstash style) are mapped."""
    event = _event_of(
        {
            "@timestamp": "2026-11-25T18:30:21.250Z",
            "host": "web1",
            "severity": "ERROR",
            "app": "shop",
            "message": "payment declined",
        },
        received,
    )
    assert event.time == utc(2026, 11, 25, 18, 30, 21, 250000)
    assert (event.host, event.program, event.level) == ("web1", "shop", "err")
    assert event.message == "payment declined"


def test_python_logging_stamp_is_local_to_tz(utc: Callable[..., float], received: float) -> None:
    """Test that Python's "2026-11-25 18:30:21,123" (no offset) is read in the configured zone."""
    parser = make_parser("json", origin="x", tz=ZoneInfo("Europe/Berlin"))
    line = '{"timestamp": "2026-11-25 18:30:21,123", "lvl": "INFO", "ident": "cron", "msg": "ok"}'
    event = parser(line, received)
    assert event.time == pytest.approx(utc(2026, 11, 25, 17, 30, 21, 123000), abs=1e-6)
    assert (event.program, event.level) == ("cron", "info")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-25T18:30:21Z", (2026, 11, 25, 18, 30, 21)),
        ("2026-11-25T19:30:21+01:00", (2026, 11, 25, 18, 30, 21)),
        ("2026-11-25T19:30:21.5+0100", (2026, 11, 25, 18, 30, 21, 500000)),
        ("2026-11-25T18:30:21.123456789Z", (2026, 11, 25, 18, 30, 21, 123457)),
        ("2026-11-25T18:30Z", (2026, 11, 25, 18, 30)),
        ("2026-11-25", (2026, 11, 25)),
        (1764095421, (2025, 11, 25, 18, 30, 21)),
        (1764095421000, (2025, 11, 25, 18, 30, 21)),
        (1764095421000000, (2025, 11, 25, 18, 30, 21)),
        (1764095421000000000, (2025, 11, 25, 18, 30, 21)),
    ],
)
def test_time_formats(
    value: object, expected: tuple[int, ...], utc: Callable[..., float], received: float
) -> None:
    """Test that ISO 8601 strings and epoch numbers in s, ms, µs and ns all give the instant."""
    event = _event_of({"time": value, "msg": "m"}, received)
    assert event.time == pytest.approx(utc(*expected), abs=1e-6)


@pytest.mark.parametrize("key", ["time", "timestamp", "@timestamp", "ts"])
def test_every_time_key(key: str, received: float) -> None:
    """Test that each conventional time key is read."""
    assert _event_of({key: 1764095421, "msg": "m"}, received).time == 1764095421


@pytest.mark.parametrize(
    "value", ["yesterday", "", None, True, [1], {"s": 1}, float("nan"), float("inf"), 10**400]
)
def test_unusable_time_falls_back_to_received(value: object, received: float) -> None:
    """Test that a time that is no instant gives the read time and no parse error."""
    parser = make_parser("json", origin="x", tz=UTC)
    event = parser(json.dumps({"time": value, "msg": "m"}), received)
    assert event.time == received
    assert parser.errors == 0


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("emerg", "emerg"),
        ("panic", "emerg"),
        ("alert", "alert"),
        ("critical", "crit"),
        ("FATAL", "crit"),
        ("error", "err"),
        ("Err", "err"),
        ("warn", "warning"),
        ("WARNING", "warning"),
        ("notice", "notice"),
        ("Information", "info"),
        ("debug", "debug"),
        ("trace", "debug"),
        ("3", "err"),
        (0, "emerg"),
        (4, "warning"),
        (7, "debug"),
        (30, "info"),
        (40, "warning"),
        (60, "crit"),
        (99, "info"),
        (True, "info"),
        (3.0, "info"),
        ("loud", "info"),
        (None, "info"),
    ],
)
def test_level_values(value: object, level: str, received: float) -> None:
    """Test that level names, aliases, syslog and pino numbers map; anything else is info."""
    assert _event_of({"level": value, "msg": "m"}, received).level == level


@pytest.mark.parametrize("key", ["level", "severity", "lvl"])
def test_every_level_key(key: str, received: float) -> None:
    """Test that each conventional level key is read."""
    assert _event_of({key: "error"}, received).level == "err"


@pytest.mark.parametrize(
    ("record", "host", "program"),
    [
        ({"host": "a", "hostname": "b"}, "a", ""),
        ({"hostname": "b"}, "b", ""),
        ({"host": {"name": "ecs"}}, "", ""),
        ({"program": "p", "app": "a"}, "", "p"),
        ({"app": "a"}, "", "a"),
        ({"ident": "i"}, "", "i"),
        ({"logger": "l"}, "", "l"),
        ({"logger": 5}, "", ""),
    ],
)
def test_host_and_program_keys(
    record: dict[str, Any], host: str, program: str, received: float
) -> None:
    """Test that host and program come from the first string-valued conventional key."""
    event = _event_of(record, received)
    assert (event.host, event.program) == (host, program)


def test_message_falls_back_to_the_line(received: float) -> None:
    """Test that a record without a string message keeps the whole line as message."""
    parser = make_parser("json", origin="x")
    assert parser('{"message": "from message", "msg": "m"}', received).message == "from message"
    assert parser('{"msg": "from msg"}', received).message == "from msg"
    assert parser('{"event": "no message key"}', received).message == '{"event": "no message key"}'
    assert parser('{"msg": {"nested": 1}}', received).message == '{"msg": {"nested": 1}}'
    assert parser.errors == 0


@pytest.mark.parametrize(
    "line",
    ["[1, 2]", "42", "null", '"text"', "{oops", '{"a": 1} trailing', "", _DEEP],
)
def test_non_object_lines_are_errors(line: str, received: float) -> None:
    """Test that invalid JSON, non-objects and absurd nesting become plain events and count."""
    parser = make_parser("json", origin="x")
    event = parser(line, received)
    assert (event.message, event.fields) == (line, {})
    assert parser.errors == 1
