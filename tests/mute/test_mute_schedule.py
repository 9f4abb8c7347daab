"""Maintenance windows: wall-clock evaluation across DST, next_change, strict parsing."""

from __future__ import annotations

import datetime
import math
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tocsin.mute import MuteDecision
from tocsin.mute.matchers import Matchers, parse_matchers
from tocsin.mute.schedule import (
    DayRange,
    Interval,
    MaintenanceCalendar,
    MaintenanceWindow,
    TimeRange,
    parse_windows,
)
from tocsin.yamlsrc import Mark, SourceError, load_yaml, value_mark

BERLIN = ZoneInfo("Europe/Berlin")
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    """Return epoch seconds of a UTC date and time."""
    return datetime.datetime(year, month, day, hour, minute, tzinfo=datetime.UTC).timestamp()


def shown(moment: float | None) -> str | None:
    """Return a UTC instant as text, so failures read as times."""
    if moment is None:
        return None
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse(text: str) -> list[MaintenanceWindow]:
    """Parse a config file holding a `maintenance:` section."""
    data = load_yaml(text, name="config.yaml")
    return parse_windows(data["maintenance"], value_mark(data, "maintenance", data.mark))


def recurring(interval_yaml: str, zone: str = "Europe/Berlin") -> MaintenanceWindow:
    """Parse one recurring window with one interval written in YAML flow style."""
    (window,) = parse(
        "maintenance:\n"
        f"  - {{name: w, matchers: [host=web1], time_zone: {zone}, intervals: [{interval_yaml}]}}\n"
    )
    return window


def changes(window: MaintenanceWindow, start: float, count: int) -> list[str | None]:
    """Return the next `count` changes from `start`, as text."""
    found: list[str | None] = []
    moment: float | None = start
    for _ in range(count):
        assert moment is not None
        moment = window.next_change(moment)
        found.append(shown(moment))
    return found


def active_minutes(window: MaintenanceWindow, start: float, end: float) -> list[str | None]:
    """Return every minute in [start, end) at which the window is active, as text."""
    steps = int((end - start) // MINUTE)
    return [shown(start + i * MINUTE) for i in range(steps) if window.active(start + i * MINUTE)]


EXAMPLE = """\
maintenance:
  - name: nightly-backup
    matchers: ["host=~db-.*"]
    time_zone: Europe/Berlin
    intervals:
      - weekdays: ["mon:fri"]
        times: [{start: "01:00", end: "02:30"}]
  - name: datacenter-move
    matchers: ["service=storage"]
    start: 2026-12-05T22:00:00+01:00
    end: 2026-12-06T04:00:00+01:00
"""


def test_example_parses_to_the_expected_windows() -> None:
    """Test that the documented example becomes one recurring and one one-off window."""
    nightly, move = parse(EXAMPLE)
    here = Mark("t", 1, 1)
    assert nightly == MaintenanceWindow(
        name="nightly-backup",
        matchers=parse_matchers(["host=~db-.*"], here),
        time_zone=BERLIN,
        intervals=(Interval(weekdays=frozenset(range(5)), times=(TimeRange(60, 150),)),),
    )
    assert move == MaintenanceWindow(
        name="datacenter-move",
        matchers=parse_matchers(["service=storage"], here),
        start=utc(2026, 12, 5, 21, 0),
        end=utc(2026, 12, 6, 3, 0),
    )
    assert nightly.where == Mark("config.yaml", 2, 5)
    assert nightly.matches({"host": "db-7"})
    assert not nightly.matches({"host": "web-7"})


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (utc(2026, 11, 24, 23, 59), False),  # Wed 00:59 CET
        (utc(2026, 11, 25, 0, 0), True),  # Wed 01:00 CET: start is inclusive
        (utc(2026, 11, 25, 1, 30) - 1, True),
        (utc(2026, 11, 25, 1, 30), False),  # Wed 02:30 CET: end is exclusive
        (utc(2026, 11, 28, 0, 30), False),  # Saturday
        (utc(2026, 7, 15, 23, 0), True),  # Thu 01:00 CEST
        (utc(2026, 7, 15, 0, 30), False),  # Wed 02:30 CEST
        (utc(2026, 7, 15, 0, 29), True),
    ],
)
def test_recurring_window_uses_local_wall_time(moment: float, expected: bool) -> None:
    """Test that mon:fri 01:00-02:30 Berlin follows CET in winter and CEST in summer."""
    nightly, _ = parse(EXAMPLE)
    assert nightly.active(moment) is expected


def test_next_change_skips_the_weekend() -> None:
    """Test that after Friday's window the next change is Monday's start."""
    nightly, _ = parse(EXAMPLE)
    assert changes(nightly, utc(2026, 11, 27, 0, 30), 3) == [
        "2026-11-27 01:30:00",
        "2026-11-30 00:00:00",
        "2026-11-30 01:30:00",
    ]


def test_one_off_window_boundaries() -> None:
    """Test that a one-off window is active for start <= now < end, with exact changes."""
    _, move = parse(EXAMPLE)
    start, end = utc(2026, 12, 5, 21, 0), utc(2026, 12, 6, 3, 0)
    assert not move.active(start - 0.001)
    assert move.active(start)
    assert move.active(end - 0.001)
    assert not move.active(end)
    assert move.next_change(start - 5) == start
    assert move.next_change(start) == end
    assert move.next_change(end) is None


def test_one_off_window_accepts_text_and_keeps_seconds() -> None:
    """Test that quoted ISO text with Z works and that seconds are not rounded to minutes."""
    (window,) = parse(
        "maintenance:\n  - {name: w, matchers: [a=b], start: '2026-12-05T22:00:30Z',"
        " end: '2026-12-05T22:10:00.5+00:00'}\n"
    )
    assert window.start == utc(2026, 12, 5, 22, 0) + 30
    assert window.next_change(utc(2026, 12, 5, 22, 0)) == utc(2026, 12, 5, 22, 0) + 30
    assert window.next_change(window.start + 1) == utc(2026, 12, 5, 22, 10) + 0.5


def test_spring_forward_skips_times_that_do_not_exist() -> None:
    """Test that 02:00-02:30 never happens on Berlin's last Sunday of March."""
    window = recurring("{times: [{start: '02:00', end: '02:30'}]}")
    night = utc(2026, 3, 28, 22, 0)
    assert active_minutes(window, night, night + 6 * HOUR) == []
    assert changes(window, night, 2) == ["2026-03-30 00:00:00", "2026-03-30 00:30:00"]


def test_spring_forward_shortens_a_window_that_spans_the_gap() -> None:
    """Test that 01:30-03:30 lasts one real hour when the clock jumps from 02:00 to 03:00."""
    window = recurring("{times: [{start: '01:30', end: '03:30'}]}")
    assert changes(window, utc(2026, 3, 29, 0, 0), 2) == [
        "2026-03-29 00:30:00",
        "2026-03-29 01:30:00",
    ]
    night = utc(2026, 3, 29, 0, 0)
    assert len(active_minutes(window, night, night + 3 * HOUR)) == 60


def test_fall_back_repeats_times_that_happen_twice() -> None:
    """Test that 02:00-02:30 is active twice on Berlin's last Sunday of October."""
    window = recurring("{times: [{start: '02:00', end: '02:30'}]}")
    assert changes(window, utc(2026, 10, 24, 23, 0), 5) == [
        "2026-10-25 00:00:00",  # 02:00 CEST
        "2026-10-25 00:30:00",
        "2026-10-25 01:00:00",  # 02:00 CET, the second time
        "2026-10-25 01:30:00",
        "2026-10-26 01:00:00",
    ]


def test_fall_back_reopens_a_window_that_touches_the_repeated_hour() -> None:
    """Test that 02:30-03:00 runs in CEST, closes at the change, and runs again in CET."""
    window = recurring("{times: [{start: '02:30', end: '03:00'}]}")
    assert changes(window, utc(2026, 10, 25, 0, 0), 4) == [
        "2026-10-25 00:30:00",
        "2026-10-25 01:00:00",
        "2026-10-25 01:30:00",
        "2026-10-25 02:00:00",
    ]


@pytest.mark.parametrize(
    ("sunday", "hours"),
    [((2026, 3, 29), 23), ((2026, 10, 25), 25), ((2026, 11, 1), 24)],
)
def test_whole_day_lasts_as_long_as_the_local_day(sunday: tuple[int, int, int], hours: int) -> None:
    """Test that a whole-day Sunday window lasts 23, 25 or 24 real hours around DST changes."""
    window = recurring("{weekdays: [sunday], times: [{start: '00:00', end: '24:00'}]}")
    begin = datetime.datetime(*sunday, tzinfo=BERLIN).timestamp()
    opened = window.next_change(begin - HOUR)
    assert opened == begin
    closed = window.next_change(opened)
    assert closed is not None
    assert closed - opened == hours * HOUR


def test_midnight_crossing_range_belongs_to_the_day_it_starts() -> None:
    """Test that friday 22:00-02:00 covers Friday night into Saturday, not Thursday night."""
    window = recurring("{weekdays: [friday], times: [{start: '22:00', end: '02:00'}]}", "UTC")
    assert not window.active(utc(2026, 11, 27, 1, 0))  # Thursday night into Friday
    assert not window.active(utc(2026, 11, 27, 21, 59))
    assert window.active(utc(2026, 11, 27, 22, 0))
    assert window.active(utc(2026, 11, 28, 1, 59))
    assert not window.active(utc(2026, 11, 28, 2, 0))
    assert not window.active(utc(2026, 11, 28, 23, 0))  # Saturday night
    assert changes(window, utc(2026, 11, 27, 12, 0), 3) == [
        "2026-11-27 22:00:00",
        "2026-11-28 02:00:00",
        "2026-12-04 22:00:00",
    ]


def test_midnight_crossing_checks_month_and_day_on_the_start_day() -> None:
    """Test that a last-day-of-November night runs into December 1st."""
    window = recurring(
        "{months: [november], days_of_month: [-1], times: [{start: '22:00', end: '02:00'}]}",
        "UTC",
    )
    assert window.active(utc(2026, 12, 1, 1, 0))
    assert not window.active(utc(2026, 11, 1, 1, 0))
    assert not window.active(utc(2026, 12, 31, 23, 0))
    assert changes(window, utc(2026, 11, 2, 0, 0), 2) == [
        "2026-11-30 22:00:00",
        "2026-12-01 02:00:00",
    ]


def test_midnight_crossing_into_the_spring_gap() -> None:
    """Test that Saturday 22:00-02:30 ends when Berlin's clock jumps to 03:00."""
    window = recurring("{weekdays: [saturday], times: [{start: '22:00', end: '02:30'}]}")
    assert changes(window, utc(2026, 3, 28, 12, 0), 2) == [
        "2026-03-28 21:00:00",
        "2026-03-29 01:00:00",
    ]


def test_end_at_midnight_forms() -> None:
    """Test that 22:00-00:00 and 22:00-24:00 mean the same and stop at midnight."""
    for end in ("00:00", "24:00"):
        window = recurring(f"{{times: [{{start: '22:00', end: '{end}'}}]}}", "UTC")
        assert window.active(utc(2026, 11, 25, 23, 59))
        assert not window.active(utc(2026, 11, 26, 0, 0))
        assert window.next_change(utc(2026, 11, 25, 22, 0)) == utc(2026, 11, 26, 0, 0)


@pytest.mark.parametrize(
    ("days", "active_on", "inactive_on"),
    [
        ("[-1]", [(2027, 2, 28), (2028, 2, 29), (2026, 4, 30), (2026, 12, 31)], [(2028, 2, 28)]),
        ("['-7:-1']", [(2026, 11, 24), (2026, 11, 30)], [(2026, 11, 23), (2026, 12, 24)]),
        ("['1:7']", [(2026, 11, 1), (2026, 11, 7)], [(2026, 11, 8), (2026, 10, 31)]),
        ("['25:-1']", [(2027, 2, 28), (2026, 12, 31)], [(2027, 2, 24)]),
        ("[31]", [(2026, 12, 31)], [(2026, 11, 30), (2026, 12, 1)]),
        ("[-31]", [(2026, 12, 1)], [(2027, 2, 1), (2027, 2, 28), (2026, 11, 1)]),
        ("[29]", [(2028, 2, 29), (2027, 3, 29)], [(2027, 2, 28), (2027, 3, 1)]),
        ("[1, '15:16']", [(2026, 1, 1), (2026, 1, 16)], [(2026, 1, 14), (2026, 1, 17)]),
    ],
)
def test_days_of_month(
    days: str, active_on: list[tuple[int, int, int]], inactive_on: list[tuple[int, int, int]]
) -> None:
    """Test positive, negative and mixed day ranges, resolved per month (Alertmanager's rules)."""
    window = recurring(f"{{days_of_month: {days}}}", "UTC")
    for day in active_on:
        assert window.active(utc(*day, 12, 0)), day
    for day in inactive_on:
        assert not window.active(utc(*day, 12, 0)), day


def test_february_29th_only_in_leap_years() -> None:
    """Test that a Feb 29 window is found in the next leap year, and not beyond the horizon."""
    window = recurring("{months: [feb], days_of_month: [29]}", "UTC")
    assert changes(window, utc(2027, 3, 1, 0, 0), 2) == [
        "2028-02-29 00:00:00",
        "2028-03-01 00:00:00",
    ]
    assert window.next_change(utc(2026, 3, 1, 0, 0)) is None
    assert window.next_change(utc(2026, 3, 1, 0, 0), horizon=3 * 366 * DAY) == utc(
        2028, 2, 29, 0, 0
    )


@pytest.mark.parametrize(
    ("interval", "active_on", "inactive_on"),
    [
        (
            "{weekdays: ['fri:mon']}",
            [(2026, 11, 27), (2026, 11, 29), (2026, 11, 30)],
            [(2026, 12, 1)],
        ),
        ("{weekdays: [saturday:sunday]}", [(2026, 11, 28), (2026, 11, 29)], [(2026, 11, 27)]),
        ("{weekdays: [Monday, 'WED']}", [(2026, 11, 23), (2026, 11, 25)], [(2026, 11, 24)]),
        ("{months: ['nov:feb']}", [(2026, 11, 1), (2027, 1, 15), (2027, 2, 28)], [(2027, 3, 1)]),
        (
            "{months: [1, '3:4', 'june']}",
            [(2027, 1, 2), (2027, 4, 30), (2027, 6, 1)],
            [(2027, 2, 2)],
        ),
        ("{months: [dec], weekdays: [fri]}", [(2026, 12, 4)], [(2026, 11, 27), (2026, 12, 5)]),
    ],
)
def test_weekday_and_month_ranges(
    interval: str,
    active_on: list[tuple[int, int, int]],
    inactive_on: list[tuple[int, int, int]],
) -> None:
    """Test names, abbreviations, numbers and wrapping ranges for weekdays and months."""
    window = recurring(interval, "UTC")
    for day in active_on:
        assert window.active(utc(*day, 12, 0)), day
    for day in inactive_on:
        assert not window.active(utc(*day, 12, 0)), day


def test_any_interval_may_open_the_window() -> None:
    """Test that a window with several intervals is active when any of them is."""
    (window,) = parse(
        "maintenance:\n  - name: w\n    matchers: [a=b]\n    intervals:\n"
        "      - {weekdays: [mon], times: [{start: '01:00', end: '02:00'}]}\n"
        "      - {weekdays: [tue], times: [{start: '03:00', end: '04:00'}, "
        "{start: '05:00', end: '06:00'}]}\n"
    )
    assert active_minutes(window, utc(2026, 11, 23, 0, 0), utc(2026, 11, 25, 0, 0))[::60] == [
        "2026-11-23 01:00:00",
        "2026-11-24 03:00:00",
        "2026-11-24 05:00:00",
    ]


def test_mute_decision_says_until_when() -> None:
    """Test the reason an incident records while a window is open, and outside it."""
    nightly, move = parse(EXAMPLE)
    assert nightly.mute_decision(utc(2026, 11, 25, 0, 10)) == MuteDecision(
        kind="maintenance",
        name="nightly-backup",
        reason="muted by maintenance window nightly-backup until 2026-11-25T01:30:00Z",
        until=utc(2026, 11, 25, 1, 30),
        counted_as="nightly-backup",
    )
    assert move.mute_decision(utc(2026, 12, 6, 0, 0)).reason == (
        "muted by maintenance window datacenter-move until 2026-12-06T03:00:00Z"
    )
    assert nightly.mute_decision(utc(2026, 11, 25, 12, 0)).until is None


def test_calendar_matches_and_tells_the_next_change() -> None:
    """Test that the calendar returns open, matching windows and the soonest change of any."""
    nightly, move = parse(EXAMPLE)
    calendar = MaintenanceCalendar(windows=[nightly, move])
    assert calendar.matching({"host": "db-1"}, now=utc(2026, 11, 25, 0, 10)) == [nightly]
    assert calendar.matching({"host": "db-1"}, now=utc(2026, 11, 25, 12, 0)) == []
    assert calendar.matching({"service": "storage"}, now=utc(2026, 12, 6, 0, 0)) == [move]
    assert calendar.next_change(utc(2026, 12, 5, 20, 0)) == utc(2026, 12, 5, 21, 0)
    assert calendar.next_change(utc(2026, 12, 5, 21, 0)) == utc(2026, 12, 6, 3, 0)
    assert calendar.next_change(utc(2026, 12, 6, 3, 0)) == utc(2026, 12, 7, 0, 0)
    assert MaintenanceCalendar(windows=[]).next_change(0.0) is None


def test_direct_construction_is_checked() -> None:
    """Test that a window is either recurring or one-off, and ranges are sane."""
    matchers = Matchers()
    with pytest.raises(ValueError, match="either intervals or start and end"):
        MaintenanceWindow(name="w", matchers=matchers)
    with pytest.raises(ValueError, match="either intervals or start and end"):
        MaintenanceWindow(name="w", matchers=matchers, intervals=(Interval(),), start=1.0, end=2.0)
    with pytest.raises(ValueError, match="needs a start before its end"):
        MaintenanceWindow(name="w", matchers=matchers, start=2.0, end=1.0)
    with pytest.raises(ValueError, match="invalid time range 60-60"):
        TimeRange(60, 60)
    assert TimeRange(1380, 120).crosses_midnight
    assert not TimeRange(0, 1440).crosses_midnight


def _doc(window_yaml: str) -> str:
    return "maintenance:\n" + "".join(f"  {line}\n" for line in window_yaml.split("\n"))


OK = "{name: w, matchers: [a=b], intervals: [{weekdays: [mon]}]}"
MOVE = "start: 2026-12-05T22:00:00+01:00, end: 2026-12-06T04:00:00+01:00"

BAD = [
    (
        "- {name: w, matchers: [a=b], time_zon: UTC, intervals: [{weekdays: [mon]}]}",
        "config.yaml:2:32: maintenance window 'w': unknown option 'time_zon' (did you mean "
        "'time_zone'?)",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{weekday: [mon]}]}",
        "config.yaml:2:45: maintenance window 'w': unknown interval option 'weekday' (did you "
        "mean 'weekdays'?)",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{weekdays: [tuesdya]}]}",
        "config.yaml:2:56: maintenance window 'w': unknown weekday 'tuesdya' (did you mean "
        "'tuesday'?); use names like monday or mon",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{weekdays: ['mon:fri:sat']}]}",
        "config.yaml:2:56: maintenance window 'w': weekday range 'mon:fri:sat' must look like "
        "first:last",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{weekdays: [1]}]}",
        "config.yaml:2:56: maintenance window 'w': a weekday must be text, not a number",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{weekdays: []}]}",
        "config.yaml:2:55: maintenance window 'w': 'weekdays' must list at least one entry",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{weekdays: mon}]}",
        "config.yaml:2:55: maintenance window 'w': 'weekdays' must be a list, not text",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{months: [13]}]}",
        "config.yaml:2:54: maintenance window 'w': month 13 is not from 1 to 12",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{months: ['0:3']}]}",
        "config.yaml:2:54: maintenance window 'w': month 0 in '0:3' is not from 1 to 12",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{months: [janury]}]}",
        "config.yaml:2:54: maintenance window 'w': unknown month 'janury' (did you mean "
        "'january'?); use names like january or jan",
    ),
    (
        "- name: w\n  matchers: [a=b]\n  intervals:\n    - months:\n        - 1:3",
        "config.yaml:6:13: maintenance window 'w': month 63 is not from 1 to 12 (write ranges "
        "in quotes: unquoted, YAML reads 1:3 as 63)",
    ),
    (
        "- name: w\n  matchers: [a=b]\n  intervals:\n    - days_of_month:\n        - 1:7",
        "config.yaml:6:13: maintenance window 'w': day of month 67 is not from 1 to 31 or -31 "
        "to -1 (write ranges in quotes: unquoted, YAML reads 1:7 as 67)",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{days_of_month: [0]}]}",
        "config.yaml:2:61: maintenance window 'w': day of month 0 is not from 1 to 31 or -31 to -1",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{days_of_month: ['1:32']}]}",
        "config.yaml:2:61: maintenance window 'w': day of month 32 is not from 1 to 31 or -31 "
        "to -1",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{days_of_month: ['7:1']}]}",
        "config.yaml:2:61: maintenance window 'w': day of month range '7:1' runs backwards",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{days_of_month: ['-1:-3']}]}",
        "config.yaml:2:61: maintenance window 'w': day of month range '-1:-3' runs backwards",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{days_of_month: ['first']}]}",
        "config.yaml:2:61: maintenance window 'w': day of month 'first' must be a number or a "
        "range like 1:7",
    ),
    (
        "- name: w\n  matchers: [a=b]\n  intervals:\n    - times: [{start: 22:00, end: '23:00'}]",
        "config.yaml:5:25: maintenance window 'w': 'start' must be quoted text like \"22:00\": "
        "unquoted, YAML reads 22:00 as the number 1320",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{times: [{start: '25:00', end: '26:00'}]}]}",
        "config.yaml:2:61: maintenance window 'w': 'start' must be a time from 00:00 to 23:59, "
        "not '25:00'",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{times: [{start: '24:00', end: '01:00'}]}]}",
        "config.yaml:2:61: maintenance window 'w': 'start' must be a time from 00:00 to 23:59, "
        "not '24:00'",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{times: [{start: '01:00', end: '24:01'}]}]}",
        "config.yaml:2:75: maintenance window 'w': 'end' must be a time from 00:00 to 24:00, "
        "not '24:01'",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{times: [{start: '1:00pm', end: '02:00'}]}]}",
        "config.yaml:2:61: maintenance window 'w': 'start' must be a time from 00:00 to 23:59, "
        "not '1:00pm'",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{times: [{start: '03:00', end: '03:00'}]}]}",
        "config.yaml:2:53: maintenance window 'w': a time range must not start and end at the "
        "same time",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{times: [{start_time: '03:00', end: '04:00'}]}]}",
        "config.yaml:2:54: maintenance window 'w': unknown time range option 'start_time' (did "
        "you mean 'start'?)",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{times: [{start: '03:00'}]}]}",
        "config.yaml:2:53: maintenance window 'w': missing required key 'end'",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [{}]}",
        "config.yaml:2:44: maintenance window 'w': an interval needs at least one of weekdays, "
        "times, days_of_month, months",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: []}",
        "config.yaml:2:43: maintenance window 'w': 'intervals' needs at least one interval",
    ),
    (
        "- {name: w, matchers: [a=b], intervals: [mon]}",
        "config.yaml:2:44: maintenance window 'w': an interval must be a mapping, not text",
    ),
    (
        "- {name: w, matchers: [a=b], time_zone: Europe/Berln, intervals: [{weekdays: [mon]}]}",
        "config.yaml:2:43: maintenance window 'w': unknown time zone 'Europe/Berln' (use an "
        "IANA name like Europe/Berlin or UTC)",
    ),
    (
        "- {name: w, matchers: [a=b], time_zone: 1, intervals: [{weekdays: [mon]}]}",
        "config.yaml:2:43: maintenance window 'w': 'time_zone' must be text, not a number",
    ),
    (
        "- {name: w, matchers: [a=b], start: 2026-12-05T22:00:00, end: 2026-12-06T04:00:00+01:00}",
        "config.yaml:2:39: maintenance window 'w': 'start' needs a UTC offset, like "
        "2026-12-05T22:00:00+01:00",
    ),
    (
        "- {name: w, matchers: [a=b], start: 2026-12-05, end: 2026-12-06T04:00:00+01:00}",
        "config.yaml:2:39: maintenance window 'w': 'start' must be a date and time like "
        "2026-12-05T22:00:00+01:00",
    ),
    (
        "- {name: w, matchers: [a=b], start: '2026-12-05', end: 2026-12-06T04:00:00+01:00}",
        "config.yaml:2:39: maintenance window 'w': 'start' must be a date and time like "
        "2026-12-05T22:00:00+01:00",
    ),
    (
        "- {name: w, matchers: [a=b], start: 'tomorrow', end: 2026-12-06T04:00:00+01:00}",
        "config.yaml:2:39: maintenance window 'w': 'start' must be a date and time like "
        "2026-12-05T22:00:00+01:00",
    ),
    (
        "- {name: w, matchers: [a=b], start: '2026-12-06T05:00:00+01:00', end: "
        "2026-12-06T04:00:00+01:00}",
        "config.yaml:2:73: maintenance window 'w': 'end' must be after 'start'",
    ),
    (
        "- {name: w, matchers: [a=b], start: 2026-12-05T22:00:00+01:00}",
        "config.yaml:2:5: maintenance window 'w': a one-off window needs both 'start' and "
        "'end' ('end' is missing)",
    ),
    (
        "- {name: w, matchers: [a=b], end: 2026-12-05T22:00:00+01:00}",
        "config.yaml:2:5: maintenance window 'w': a one-off window needs both 'start' and "
        "'end' ('start' is missing)",
    ),
    (
        "- {name: w, matchers: [a=b], " + MOVE + ", intervals: [{weekdays: [mon]}]}",
        "config.yaml:2:32: maintenance window 'w': give either 'intervals' (recurring) or "
        "'start' and 'end' (one-off), not both",
    ),
    (
        "- {name: w, matchers: [a=b]}",
        "config.yaml:2:5: maintenance window 'w': needs 'intervals' (recurring) or 'start' and "
        "'end' (one-off)",
    ),
    (
        "- {name: w, intervals: [{weekdays: [mon]}]}",
        "config.yaml:2:5: maintenance window 'w': missing required key 'matchers'",
    ),
    (
        "- {name: w, matchers: ['a=~.*'], intervals: [{weekdays: [mon]}]}",
        "config.yaml:2:25: maintenance window 'w': 'matchers' needs at least one matcher that "
        "does not match the empty string, like host=web1 or host=~.+ (these would also match "
        "incidents without the labels)",
    ),
    (
        "- {name: w, matchers: [], intervals: [{weekdays: [mon]}]}",
        "config.yaml:2:25: maintenance window 'w': 'matchers' needs at least one matcher, like "
        "host=web1",
    ),
    (
        "- {name: w, matchers: ['a=~('], intervals: [{weekdays: [mon]}]}",
        "config.yaml:2:26: maintenance window 'w': matcher 'a=~(' has an invalid regex: "
        "missing ): (",
    ),
    (
        "- {name: w, matchers: host=web1, intervals: [{weekdays: [mon]}]}",
        "config.yaml:2:25: maintenance window 'w': 'matchers' must be a list, not text",
    ),
    (
        "- " + OK + "\n- {matchers: [a=b], intervals: [{weekdays: [mon]}]}",
        "config.yaml:3:5: maintenance window 2: missing required key 'name'",
    ),
    (
        "- {name: ' ', matchers: [a=b], intervals: [{weekdays: [mon]}]}",
        "config.yaml:2:12: maintenance window 1: 'name' must not be empty",
    ),
    (
        "- {name: 3, matchers: [a=b], intervals: [{weekdays: [mon]}]}",
        "config.yaml:2:12: maintenance window 1: 'name' must be text, not a number",
    ),
    (
        "- " + OK + "\n- {name: w, matchers: [a=c], intervals: [{weekdays: [tue]}]}",
        "config.yaml:3:12: duplicate maintenance window name 'w' (first defined at "
        "config.yaml:2:12)",
    ),
    ("- nightly", "config.yaml:2:5: a maintenance window must be a mapping, not text"),
    ("{name: w}", "config.yaml:2:3: 'maintenance' must be a list, not a mapping"),
]


@pytest.mark.parametrize(("window_yaml", "message"), BAD)
def test_bad_windows(window_yaml: str, message: str) -> None:
    """Test that each broken window is rejected with exactly this file:line:col message."""
    with pytest.raises(SourceError) as caught:
        parse(_doc(window_yaml))
    assert str(caught.value) == message


def test_an_empty_section_means_no_windows() -> None:
    """Test that `maintenance:` with nothing under it is allowed and empty."""
    assert parse("maintenance:\n") == []


# ---------------------------------------------------------------------------------------------
# Properties, checked against brute force over minutes

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",  # DST moves the clock by 30 minutes
    "Asia/Kathmandu",  # +05:45
    "America/St_Johns",  # -03:30 / -02:30
    "Pacific/Apia",  # skipped a whole day in 2011
]
# Instants near offset changes, where mistakes hide.
PIVOTS = [
    utc(2026, 3, 29, 1, 0),
    utc(2026, 10, 25, 1, 0),
    utc(2026, 3, 8, 7, 0),
    utc(2026, 11, 1, 6, 0),
    utc(2026, 4, 4, 15, 0),
    utc(2026, 10, 3, 15, 30),
    utc(2011, 12, 30, 10, 0),
    utc(2028, 2, 29, 0, 0),
]

minutes_of_day = st.integers(min_value=0, max_value=1439)


@st.composite
def time_ranges(draw: st.DrawFn) -> TimeRange:
    """Draw a time range, about half of them crossing midnight."""
    start = draw(minutes_of_day)
    end = draw(st.integers(min_value=0, max_value=1440).filter(lambda e: e != start))
    return TimeRange(start, end)


@st.composite
def day_ranges(draw: st.DrawFn) -> DayRange:
    """Draw a valid days_of_month entry, negative ends included."""
    days = st.integers(min_value=-31, max_value=31).filter(lambda d: d != 0)
    first, last = draw(days), draw(days)
    if (first > 0) == (last > 0) and first > last:
        first, last = last, first
    return DayRange(first, last)


intervals = st.builds(
    Interval,
    weekdays=st.none() | st.frozensets(st.integers(0, 6), min_size=1),
    times=st.lists(time_ranges(), max_size=3).map(tuple),
    days_of_month=st.none() | st.lists(day_ranges(), min_size=1, max_size=2).map(tuple),
    months=st.none() | st.frozensets(st.integers(1, 12), min_size=1),
)
windows = st.builds(
    MaintenanceWindow,
    name=st.just("w"),
    matchers=st.just(Matchers()),
    time_zone=st.sampled_from(ZONES).map(ZoneInfo),
    intervals=st.lists(intervals, min_size=1, max_size=2).map(tuple),
)
moments = st.builds(
    lambda pivot, delta: pivot + delta,
    st.sampled_from(PIVOTS),
    st.floats(min_value=-2 * DAY, max_value=2 * DAY, allow_nan=False),
)


def reference_active(window: MaintenanceWindow, now: float) -> bool:
    """Decide activity the slow, obvious way: naive wall-clock intervals per day."""
    local = datetime.datetime.fromtimestamp(now, window.time_zone).replace(tzinfo=None)
    for interval in window.intervals:
        for back in (0, 1):
            day = local.date() - datetime.timedelta(days=back)
            if not interval.day_matches(day):
                continue
            midnight = datetime.datetime.combine(day, datetime.time())
            if not interval.times and back == 0:
                return True
            for span in interval.times:
                end = span.end + (1440 if span.crosses_midnight else 0)
                begin_at = midnight + datetime.timedelta(minutes=span.start)
                end_at = midnight + datetime.timedelta(minutes=end)
                if begin_at <= local < end_at:
                    return True
    return False


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(window=windows, now=moments)
def test_active_agrees_with_the_reference(window: MaintenanceWindow, now: float) -> None:
    """Test that active() equals a naive wall-clock reference, midnight crossings included."""
    assert window.active(now) is reference_active(window, now)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window=windows, now=moments)
def test_next_change_is_the_first_minute_that_flips(window: MaintenanceWindow, now: float) -> None:
    """Test, by brute force over minutes, that next_change is exactly where active() flips."""
    state = window.active(now)
    upcoming = window.next_change(now)
    span = 3 * DAY
    if upcoming is not None:
        assert upcoming > now
        assert upcoming % MINUTE == 0
        assert window.active(upcoming) is not state
    last = now + span if upcoming is None else min(upcoming, now + span)
    minute = math.floor(now / MINUTE) * MINUTE + MINUTE
    while minute < last:
        assert window.active(minute) is state, shown(minute)
        minute += MINUTE


@settings(max_examples=60, deadline=None)
@given(window=windows, now=moments)
def test_changes_alternate(window: MaintenanceWindow, now: float) -> None:
    """Test that successive changes alternate between opening and closing."""
    state = window.active(now)
    moment = now
    for _ in range(6):
        upcoming = window.next_change(moment)
        if upcoming is None:
            break
        assert upcoming > moment
        state = not state
        assert window.active(upcoming) is state
        moment = upcoming


def test_parsed_windows_match_hand_built_ones() -> None:
    """Test that parsing builds exactly the interval a reader would expect from the YAML."""
    window = recurring(
        "{weekdays: ['sat:sun', mon], months: ['dec:jan'], days_of_month: [-1, '1:7'], "
        "times: [{start: '22:00', end: '02:00'}, {start: '12:00', end: '24:00'}]}"
    )
    assert window.intervals == (
        Interval(
            weekdays=frozenset({5, 6, 0}),
            months=frozenset({12, 1}),
            days_of_month=(DayRange(-1, -1), DayRange(1, 7)),
            times=(TimeRange(1320, 120), TimeRange(720, 1440)),
        ),
    )
