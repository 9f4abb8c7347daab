"""Year inference for yearless BSD stamps: fixed replay year, guess from now, New Year rollover."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from zoneinfo import ZoneInfo

import pytest

from tocsin.parsers import Parser, make_parser


def _times(parser: Parser, stamps: list[str], received: float) -> list[float]:
    """Feed one syslog line per stamp and return the parsed times."""
    return [parser(f"{stamp} web1 app[1]: m", received).time for stamp in stamps]


def _live(now: float) -> Parser:
    """Return a UTC syslog parser without a fixed year, its clock stopped at `now`."""
    return make_parser("syslog", origin="x", tz=UTC, now=lambda: now)


def test_fixed_year_is_the_first_lines_year(utc: Callable[..., float], received: float) -> None:
    """Test that --year sets the year of the first line even if now() says otherwise."""
    parser = make_parser("syslog", origin="x", year=2019, tz=UTC, now=lambda: utc(2026, 1, 1))
    assert _times(parser, ["Mar  3 03:03:03"], received) == [utc(2019, 3, 3, 3, 3, 3)]


def test_feb_29_in_a_fixed_leap_year(utc: Callable[..., float], received: float) -> None:
    """Test that Feb 29 parses when the replay year has one."""
    parser = make_parser("syslog", origin="x", year=2024, tz=UTC)
    assert _times(parser, ["Feb 29 12:00:00"], received) == [utc(2024, 2, 29, 12)]
    assert parser.errors == 0


def test_feb_29_in_a_fixed_common_year_is_an_error(received: float) -> None:
    """Test that Feb 29 in a year without one becomes a plain event instead of a wrong date."""
    parser = make_parser("syslog", origin="x", year=2025, tz=UTC)
    assert _times(parser, ["Feb 29 12:00:00"], received) == [received]
    assert parser.errors == 1


@pytest.mark.parametrize(
    ("now", "stamp", "expected"),
    [
        ((2026, 11, 25, 18), "Nov 25 18:30:21", (2026, 11, 25, 18, 30, 21)),  # this month
        ((2026, 11, 25, 18), "Mar  1 00:00:00", (2026, 3, 1)),  # months ago this year
        ((2026, 1, 10), "Dec 31 23:59:59", (2025, 12, 31, 23, 59, 59)),  # December read in January
        ((2026, 1, 10), "Mar  1 00:00:00", (2025, 3, 1)),  # two months ahead: last year
        ((2026, 1, 10), "Feb  1 00:00:00", (2026, 2, 1)),  # one month ahead: skew, this year
        ((2025, 12, 31, 23, 59, 58), "Jan  1 00:00:01", (2026, 1, 1, 0, 0, 1)),  # sender ahead
        ((2026, 12, 10), "Jan  3 00:00:00", (2026, 1, 3)),  # an old file read in December
        ((2024, 3, 1), "Feb 29 23:00:00", (2024, 2, 29, 23)),  # leap day read the day after
    ],
)
def test_year_guessed_from_now(
    now: tuple[int, ...],
    stamp: str,
    expected: tuple[int, ...],
    utc: Callable[..., float],
    received: float,
) -> None:
    """Test that without --year the first line's year comes from now(), future months last year."""
    assert _times(_live(utc(*now)), [stamp], received) == [utc(*expected)]


def test_now_is_read_in_tz(utc: Callable[..., float], received: float) -> None:
    """Test that "which month is it now" is answered in the parser's zone, not in UTC."""
    now = utc(2025, 12, 31, 15)  # still December in UTC, already 2026-01-01 in Tokyo
    tokyo = make_parser("syslog", origin="x", tz=ZoneInfo("Asia/Tokyo"), now=lambda: now)
    london = make_parser("syslog", origin="x", tz=UTC, now=lambda: now)
    assert _times(tokyo, ["Feb  1 09:00:00"], received) == [utc(2026, 2, 1)]
    assert _times(london, ["Feb  1 00:00:00"], received) == [utc(2025, 2, 1)]


def test_new_year_rollover_inside_a_file(utc: Callable[..., float], received: float) -> None:
    """Test that Dec -> Jan moves the year forward, so a leap day after it is valid."""
    parser = make_parser("syslog", origin="x", year=2023, tz=UTC)
    times = _times(parser, ["Dec 31 23:59:59", "Jan  1 00:00:00", "Feb 29 06:00:00"], received)
    assert times == [utc(2023, 12, 31, 23, 59, 59), utc(2024, 1, 1), utc(2024, 2, 29, 6)]
    assert parser.errors == 0


def test_rollover_from_a_guessed_year(utc: Callable[..., float], received: float) -> None:
    """Test that a file read in January rolls from last December into this January."""
    parser = _live(utc(2026, 1, 2))
    times = _times(parser, ["Dec 31 22:00:00", "Jan  1 01:00:00", "Jan  2 00:00:00"], received)
    assert times == [utc(2025, 12, 31, 22), utc(2026, 1, 1, 1), utc(2026, 1, 2)]


def test_small_month_steps_back_do_not_roll(utc: Callable[..., float], received: float) -> None:
    """Test that a line out of order across a month end stays in the same year."""
    parser = make_parser("syslog", origin="x", year=2026, tz=UTC)
    times = _times(parser, ["Feb  1 00:00:01", "Jan 31 23:59:59", "Feb  1 00:00:02"], received)
    assert times == [
        utc(2026, 2, 1, 0, 0, 1),
        utc(2026, 1, 31, 23, 59, 59),
        utc(2026, 2, 1, 0, 0, 2),
    ]


def test_late_december_line_after_new_year(utc: Callable[..., float], received: float) -> None:
    """Test that a December straggler after New Year is last year and does not roll twice."""
    parser = make_parser("syslog", origin="x", year=2025, tz=UTC)
    stamps = ["Dec 31 23:59:58", "Jan  1 00:00:00", "Dec 31 23:59:59", "Jan  1 00:00:01"]
    assert _times(parser, stamps, received) == [
        utc(2025, 12, 31, 23, 59, 58),
        utc(2026, 1, 1),
        utc(2025, 12, 31, 23, 59, 59),
        utc(2026, 1, 1, 0, 0, 1),
    ]


def test_long_silence_is_reguessed_from_now(utc: Callable[..., float], received: float) -> None:
    """Test that a live file quiet from January to August keeps this year instead of last."""
    clock = [utc(2026, 1, 15)]
    parser = make_parser("syslog", origin="x", tz=UTC, now=lambda: clock[0])
    first = _times(parser, ["Jan 15 00:00:00"], received)
    clock[0] = utc(2026, 8, 20)
    later = _times(parser, ["Aug 20 00:00:00", "Aug 21 00:00:00"], received)
    assert first + later == [utc(2026, 1, 15), utc(2026, 8, 20), utc(2026, 8, 21)]


def test_same_stamp_in_two_years_is_not_cached_as_one(
    utc: Callable[..., float], received: float
) -> None:
    """Test that the epoch cache keys on the inferred year, not only the stamp text."""
    parser = make_parser("syslog", origin="x", year=2026, tz=UTC)
    stamps = ["Jan  1 00:00:00", "Jun  1 00:00:00", "Dec  1 00:00:00", "Jan  1 00:00:00"]
    times = _times(parser, stamps, received)
    assert (times[0], times[3]) == (utc(2026, 1, 1), utc(2027, 1, 1))


def test_cache_overflow_keeps_answers_right(utc: Callable[..., float], received: float) -> None:
    """Test that more distinct stamps than the cache holds still parse to the right times."""
    parser = make_parser("syslog", origin="x", year=2026, tz=UTC)
    stamps = [
        f"Mar {day:2d} {hour:02d}:{minute:02d}:00"
        for day in (1, 2)
        for hour in range(24)
        for minute in range(60)
    ]
    times = _times(parser, stamps, received)
    assert times[-1] == utc(2026, 3, 2, 23, 59)
    assert times[0] == utc(2026, 3, 1)
    assert _times(parser, [stamps[0]], received) == [utc(2026, 3, 1)]
    assert parser.errors == 0


@pytest.fixture
def new_york_local() -> Iterator[None]:
    """Make the machine's local zone America/New_York for one test."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.mark.usefixtures("new_york_local")
def test_default_tz_is_the_machines_local_zone(utc: Callable[..., float], received: float) -> None:
    """Test that without tz BSD stamps are local time of the machine, DST included."""
    parser = make_parser("syslog", origin="x", year=2026)
    times = _times(parser, ["Jul  4 12:00:00", "Dec 25 12:00:00"], received)
    assert times == [utc(2026, 7, 4, 16), utc(2026, 12, 25, 17)]
