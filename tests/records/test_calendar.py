"""Business hours: weekends, holidays, DST days of 23 and 25 hours, huge spans, parsing."""

from __future__ import annotations

import datetime
import time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tocsin.records.calendar import ALWAYS, BusinessHours, parse_business_hours
from tocsin.yamlsrc import SourceError, load_yaml, value_mark

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
HOUR = 3600.0
EVERY_DAY = frozenset(range(7))


def parse(text: str) -> BusinessHours:
    """Parse a config file holding a `business_hours:` mapping."""
    data = load_yaml(text, name="sla.yaml")
    return parse_business_hours(
        data["business_hours"], value_mark(data, "business_hours", data.mark)
    )


def office(extra: str = "") -> BusinessHours:
    """Return Berlin office hours, 08:00-18:00 Monday to Friday, plus any extra options."""
    return parse(
        "business_hours: {time_zone: Europe/Berlin, from: '08:00', to: '18:00'"
        f"{', ' + extra if extra else ''}}}\n"
    )


def at(text: str, zone: ZoneInfo = BERLIN, fold: int = 0) -> float:
    """Return epoch seconds of a local wall time like '2026-03-29 09:00'."""
    return datetime.datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold).timestamp()


def local(moment: float, zone: ZoneInfo = BERLIN) -> str:
    """Show an instant as local wall time with its offset, so failures read as times."""
    return datetime.datetime.fromtimestamp(moment, zone).strftime("%a %Y-%m-%d %H:%M%z")


def test_weekend_is_skipped() -> None:
    """Test that two hours from Friday 17:00 end on Monday 09:00, and count back as two."""
    hours = office()
    due = hours.add(at("2026-01-09 17:00"), 2 * HOUR)
    assert local(due) == "Mon 2026-01-12 09:00+0100"
    assert hours.elapsed(at("2026-01-09 17:00"), due) == 2 * HOUR
    assert hours.elapsed(at("2026-01-09 18:00"), at("2026-01-12 08:00")) == 0.0


def test_holidays_are_closed_all_day() -> None:
    """Test that a holiday (a Friday here) is skipped like a weekend day."""
    hours = office("holidays: [2026-12-25, '2026-12-28']")
    due = hours.add(at("2026-12-24 17:00"), 2 * HOUR)
    assert local(due) == "Tue 2026-12-29 09:00+0100"
    assert hours.elapsed(at("2026-12-24 00:00"), at("2026-12-30 00:00")) == 20 * HOUR


def test_start_outside_hours_counts_from_next_opening() -> None:
    """Test that time counts from the next opening, and a closing instant is not business time."""
    hours = office()
    assert local(hours.add(at("2026-01-06 06:00"), 0)) == "Tue 2026-01-06 08:00+0100"
    assert local(hours.add(at("2026-01-06 06:00"), HOUR)) == "Tue 2026-01-06 09:00+0100"
    assert local(hours.add(at("2026-01-06 18:00"), 0)) == "Wed 2026-01-07 08:00+0100"
    assert local(hours.add(at("2026-01-10 12:00"), 0)) == "Mon 2026-01-12 08:00+0100"
    # A whole day's hours end at the closing time, not at the next opening.
    assert local(hours.add(at("2026-01-06 08:00"), 10 * HOUR)) == "Tue 2026-01-06 18:00+0100"
    assert hours.add(at("2026-01-06 10:30"), 0) == at("2026-01-06 10:30")


def test_berlin_dst_days_have_their_true_length() -> None:
    """Test that round-the-clock hours give 23 hours in late March and 25 in late October."""
    hours = parse(
        "business_hours: {time_zone: Europe/Berlin, weekdays: ['mon:sun'], "
        "from: '00:00', to: '24:00'}\n"
    )
    assert hours.elapsed(at("2026-03-29 00:00"), at("2026-03-30 00:00")) == 23 * HOUR
    assert hours.elapsed(at("2026-10-25 00:00"), at("2026-10-26 00:00")) == 25 * HOUR
    assert local(hours.add(at("2026-03-29 00:00"), 24 * HOUR)) == "Mon 2026-03-30 01:00+0200"
    assert local(hours.add(at("2026-10-25 00:00"), 24 * HOUR)) == "Sun 2026-10-25 23:00+0100"


def test_office_hours_keep_wall_clock_across_berlin_dst() -> None:
    """Test that 08:00-18:00 stays 08:00-18:00 local on both sides of each change."""
    hours = office()
    due = hours.add(at("2026-03-27 17:00"), 2 * HOUR)
    assert local(due) == "Mon 2026-03-30 09:00+0200"
    assert due - at("2026-03-27 17:00") == 64 * HOUR - HOUR  # the weekend was an hour short
    due = hours.add(at("2026-10-23 17:00"), 2 * HOUR)
    assert local(due) == "Mon 2026-10-26 09:00+0100"
    assert due - at("2026-10-23 17:00") == 64 * HOUR + HOUR


def test_new_york_hours_inside_the_skipped_and_repeated_hour() -> None:
    """Test that 01:00-03:00 has one hour on the spring day and three on the autumn day."""
    hours = parse(
        "business_hours: {time_zone: America/New_York, weekdays: [sunday], "
        "from: '01:00', to: '03:00'}\n"
    )
    spring = hours.elapsed(at("2026-03-08 00:00", NEW_YORK), at("2026-03-09 00:00", NEW_YORK))
    autumn = hours.elapsed(at("2026-11-01 00:00", NEW_YORK), at("2026-11-02 00:00", NEW_YORK))
    assert (spring, autumn) == (HOUR, 3 * HOUR)
    due = hours.add(at("2026-03-08 00:00", NEW_YORK), 1.5 * HOUR)
    assert local(due, NEW_YORK) == "Sun 2026-03-15 01:30-0400"
    second = hours.add(at("2026-11-01 00:00", NEW_YORK), 1.5 * HOUR)
    assert second == at("2026-11-01 01:30", NEW_YORK, fold=1)


def test_hours_past_midnight_belong_to_the_day_they_start() -> None:
    """Test that Friday 22:00-06:00 runs into Saturday and Saturday night is closed."""
    hours = parse(
        "business_hours: {time_zone: Europe/Berlin, weekdays: [friday], "
        "from: '22:00', to: '06:00'}\n"
    )
    assert hours.elapsed(at("2026-01-05 00:00"), at("2026-01-12 00:00")) == 8 * HOUR
    assert local(hours.add(at("2026-01-09 12:00"), 7 * HOUR)) == "Sat 2026-01-10 05:00+0100"
    assert local(hours.add(at("2026-01-10 05:00"), 2 * HOUR)) == "Fri 2026-01-16 23:00+0100"


def test_huge_durations_are_fast_and_exact() -> None:
    """Test that ten years of office hours take well under a second and land on a Friday 18:00."""
    hours = office()
    week = 50 * HOUR
    started = time.perf_counter()
    due = hours.add(at("2026-01-05 08:00"), 520 * week)
    spent = time.perf_counter() - started
    last_friday = datetime.date(2026, 1, 5) + datetime.timedelta(weeks=519, days=4)
    assert local(due) == local(at(f"{last_friday} 18:00"))
    assert hours.elapsed(at("2026-01-05 08:00"), due) == 520 * week
    assert spent < 1.0


def test_always_counts_every_second() -> None:
    """Test that the 24x7 calendar adds and subtracts plainly."""
    assert ALWAYS.add(1000.0, 60.0) == 1060.0
    assert ALWAYS.elapsed(1000.0, 1060.0) == 60.0
    assert ALWAYS.elapsed(1060.0, 1000.0) == 0.0
    with pytest.raises(ValueError, match="negative"):
        ALWAYS.add(0.0, -1.0)
    with pytest.raises(ValueError, match="negative"):
        office().add(0.0, -1.0)


def _is_open(hours: BusinessHours, moment: float) -> bool:
    """Decide from the definition whether `moment` is business time (the test's oracle)."""
    wall = datetime.datetime.fromtimestamp(moment, hours.time_zone)
    day, minute = wall.date(), wall.hour * 60 + wall.minute

    def working(date: datetime.date) -> bool:
        return date.weekday() in hours.weekdays and date not in hours.holidays

    if hours.opens < hours.closes:
        return working(day) and hours.opens <= minute < hours.closes
    return (working(day) and minute >= hours.opens) or (
        working(day - datetime.timedelta(days=1)) and minute < hours.closes
    )


ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]
# Midnights (UTC) a few days before DST changes in those zones, so examples cross them.
STARTS = [at(d, ZoneInfo("UTC")) for d in ("2026-03-06", "2026-03-27", "2026-10-02", "2026-10-30")]
calendars = st.builds(
    lambda zone, opens, closes, days, holidays: BusinessHours(
        time_zone=ZoneInfo(zone),
        opens=opens,
        closes=closes if closes != opens else (opens + 60) % 1440 or 1440,
        weekdays=frozenset(days),
        holidays=frozenset(holidays),
    ),
    st.sampled_from(ZONES),
    st.integers(0, 1439),
    st.integers(1, 1440),
    st.sets(st.integers(0, 6), min_size=1),
    st.sets(st.dates(datetime.date(2026, 3, 1), datetime.date(2026, 11, 10)), max_size=4),
)


@settings(max_examples=120, deadline=None)
@given(calendars, st.sampled_from(STARTS), st.integers(0, 3 * 1440), st.integers(1, 4 * 1440))
def test_elapsed_matches_minute_by_minute_count(
    hours: BusinessHours, base: float, skip: int, minutes: int
) -> None:
    """Test that elapsed() equals counting open minutes one by one, across DST changes."""
    start = base + skip * 60
    expected = sum(_is_open(hours, start + i * 60) for i in range(minutes)) * 60
    assert hours.elapsed(start, start + minutes * 60) == expected


@settings(max_examples=100, deadline=None)
@given(
    calendars,
    st.floats(1_767_225_600, 1_830_297_600),  # 2026 to 2027
    st.floats(0, 400 * 86400),
)
def test_add_then_elapsed_round_trips(hours: BusinessHours, start: float, seconds: float) -> None:
    """Test that the business time from start to add(start, s) is s, and add is the earliest."""
    due = hours.add(start, seconds)
    assert due >= start
    assert hours.elapsed(start, due) == pytest.approx(seconds, abs=1e-3)
    if seconds >= 1:
        assert hours.elapsed(start, due - 1) < seconds


ERRORS = [
    pytest.param(
        "business_hours: {from: '08:00', to: '18:00'}\n",
        "sla.yaml:1:17: missing required key 'time_zone'",
        id="no-zone",
    ),
    pytest.param(
        "business_hours: {time_zone: Europe/Berlni, from: '08:00', to: '18:00'}\n",
        "sla.yaml:1:29: unknown time zone 'Europe/Berlni' (use an IANA name like Europe/Berlin or UTC)",
        id="bad-zone",
    ),
    pytest.param(
        "business_hours: {time_zone: UTC, form: '08:00', to: '18:00'}\n",
        "sla.yaml:1:34: unknown business hours option 'form' (did you mean 'from'?)",
        id="typo",
    ),
    pytest.param(
        "business_hours: {time_zone: UTC, from: '08:00', to: '08:00'}\n",
        "sla.yaml:1:53: 'to' must differ from 'from' (for 24 hours use 00:00 to 24:00)",
        id="empty-day",
    ),
    pytest.param(
        "business_hours: {time_zone: UTC, from: 8:00, to: '18:00'}\n",
        "sla.yaml:1:40: 'from' must be quoted text like \"22:00\": unquoted, YAML reads 8:00 as the number 480",
        id="sexagesimal",
    ),
    pytest.param(
        "business_hours: {time_zone: UTC, from: '08:00', to: '25:00'}\n",
        "sla.yaml:1:53: 'to' must be a time from 00:00 to 24:00, not '25:00'",
        id="late",
    ),
    pytest.param(
        "business_hours: {time_zone: UTC, from: '08:00', to: '18:00', weekdays: [mondy]}\n",
        "sla.yaml:1:73: unknown weekday 'mondy' (did you mean 'monday'?); use names like monday or mon",
        id="weekday",
    ),
    pytest.param(
        "business_hours: {time_zone: UTC, from: '08:00', to: '18:00', weekdays: []}\n",
        "sla.yaml:1:72: 'weekdays' must list at least one day",
        id="no-days",
    ),
    pytest.param(
        "business_hours: {time_zone: UTC, from: '08:00', to: '18:00', holidays: [2026-12-25T10:00:00Z]}\n",
        "sla.yaml:1:73: a holiday must be a date like 2026-12-25, not datetime.datetime(2026, 12, 25, 10, 0, tzinfo=datetime.timezone.utc)",
        id="holiday-time",
    ),
    pytest.param(
        "business_hours: {time_zone: UTC, from: '08:00', to: '18:00', holidays: ['Dec 25']}\n",
        "sla.yaml:1:73: a holiday must be a date like 2026-12-25, not 'Dec 25'",
        id="holiday-text",
    ),
    pytest.param(
        "business_hours: [UTC]\n",
        "sla.yaml:1:17: 'business_hours' must be a mapping, not a list",
        id="not-map",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_config_errors_name_file_line_and_problem(text: str, message: str) -> None:
    """Test that each business-hours mistake is refused with its exact file:line message."""
    with pytest.raises(SourceError) as caught:
        parse(text)
    assert str(caught.value) == message


def test_parsed_defaults() -> None:
    """Test that weekdays default to Monday to Friday and ranges like sat:sun work."""
    assert office().weekdays == frozenset(range(5))
    weekend = office("weekdays: ['sat:sun']")
    assert weekend.weekdays == frozenset({5, 6})
    assert weekend.holidays == frozenset()
    assert office("holidays: [2026-12-25]").holidays == {datetime.date(2026, 12, 25)}
