"""Maintenance windows: recurring (Alertmanager `time_intervals`) or one-off, with matchers.

Recurring windows are evaluated on local wall time in their `time_zone`, so `01:00-02:30`
means that clock reading across DST changes. Times the clock skips (Europe/Berlin,
last Sunday of March, 02:00-02:59) never happen; times it repeats (last Sunday of October,
02:00-02:59) happen twice, and a window covering them is active both times.

A time range whose end is not after its start crosses midnight: `22:00-02:00` runs until
02:00 the next day. Weekdays, days of the month and months are checked on the day the range
starts, so `weekdays: [friday]` with `22:00-02:00` covers Friday night into Saturday.
Weekday and month ranges may wrap (`fri:mon`, `nov:feb`); `24:00` is allowed as an end.
"""

from __future__ import annotations

import bisect
import calendar
import datetime
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tocsin.mute import MuteDecision, format_time
from tocsin.mute.matchers import Matchers, parse_matchers
from tocsin.rules.schema import Errors, check_keys, expect_list, expect_map, expect_str, parse_named
from tocsin.yamlsrc import Mark, SourceError, did_you_mean, key_mark, value_mark

__all__ = [
    "HORIZON",
    "MONTHS",
    "WEEKDAYS",
    "DayRange",
    "Interval",
    "MaintenanceCalendar",
    "MaintenanceWindow",
    "TimeRange",
    "offset_change",
    "parse_clock",
    "parse_cyclic",
    "parse_time_zone",
    "parse_weekdays",
    "parse_windows",
    "utc_offset",
]

WEEKDAYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
MONTHS: tuple[str, ...] = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
# How far next_change looks ahead for a recurring window: a year and a day.
HORIZON = 366 * 86400.0

_DAY = 1440
_UTC = datetime.UTC


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Local minutes of the day [start, end); an end before the start crosses midnight."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start < _DAY and 0 <= self.end <= _DAY and self.start != self.end):
            raise ValueError(f"invalid time range {self.start}-{self.end}")

    @property
    def crosses_midnight(self) -> bool:
        """Tell whether the range runs into the next day."""
        return self.end < self.start


@dataclass(frozen=True, slots=True)
class DayRange:
    """Days of the month, both ends inclusive; negative days count back (-1 is the last day)."""

    first: int
    last: int

    def contains(self, day: datetime.date) -> bool:
        """Test `day` against this range, resolved for its month's length."""
        length = calendar.monthrange(day.year, day.month)[1]
        first = self.first if self.first > 0 else length + self.first + 1
        last = self.last if self.last > 0 else length + self.last + 1
        if first > length:  # the 31st in a 30-day month: not this month
            return False
        return first <= day.day <= last


@dataclass(frozen=True, slots=True)
class Interval:
    """One `intervals` entry: every given condition must hold (absent ones always do)."""

    weekdays: frozenset[int] | None = None  # 0 is Monday
    times: tuple[TimeRange, ...] = ()  # empty: the whole day
    days_of_month: tuple[DayRange, ...] | None = None
    months: frozenset[int] | None = None  # 1 is January

    def day_matches(self, day: datetime.date) -> bool:
        """Test the day-level conditions (weekdays, days_of_month, months)."""
        if self.months is not None and day.month not in self.months:
            return False
        if self.weekdays is not None and day.weekday() not in self.weekdays:
            return False
        return self.days_of_month is None or any(r.contains(day) for r in self.days_of_month)

    def contains(self, day: datetime.date, minute: int) -> bool:
        """Test a local wall time, given as its date and minute of the day."""
        if not self.times:
            return self.day_matches(day)
        today: bool | None = None
        yesterday: bool | None = None
        for span in self.times:
            if span.start <= minute < span.end or (span.crosses_midnight and minute >= span.start):
                if today is None:
                    today = self.day_matches(day)
                if today:
                    return True
            elif span.crosses_midnight and minute < span.end:
                if yesterday is None:
                    yesterday = self.day_matches(day - datetime.timedelta(days=1))
                if yesterday:
                    return True
        return False


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """A named window that mutes matching incidents: recurring `intervals`, or `start`-`end`."""

    name: str
    matchers: Matchers
    time_zone: datetime.tzinfo = _UTC
    intervals: tuple[Interval, ...] = ()
    start: float | None = None
    end: float | None = None
    where: Mark | None = field(default=None, compare=False)
    # Minutes of the day where a recurring window's state can change (midnight always can).
    _cuts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        one_off = self.start is not None or self.end is not None
        if one_off == bool(self.intervals):
            raise ValueError("a maintenance window has either intervals or start and end")
        if one_off and (self.start is None or self.end is None or self.end <= self.start):
            raise ValueError("a one-off maintenance window needs a start before its end")
        cuts = {0}
        for interval in self.intervals:
            for span in interval.times:
                cuts.update((span.start, span.end % _DAY))
        object.__setattr__(self, "_cuts", tuple(sorted(cuts)))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Test the matchers only, whatever the time."""
        return self.matchers.matches(labels)

    def active(self, now: float) -> bool:
        """Tell whether the window is open at `now` (a one-off one for start <= now < end)."""
        if self.start is not None and self.end is not None:
            return self.start <= now < self.end
        local = datetime.datetime.fromtimestamp(now, self.time_zone)
        day, minute = local.date(), local.hour * 60 + local.minute
        return any(interval.contains(day, minute) for interval in self.intervals)

    def next_change(self, now: float, *, horizon: float = HORIZON) -> float | None:
        """Return when the window next opens or closes after `now`, else None.

        Recurring windows are searched at most `horizon` seconds ahead, to the minute: they can
        change only where local time reaches a range's start or end, at local midnight, or
        where the zone's offset changes, so the search jumps between those instants. Offsets
        are taken to be whole minutes, as every zone's has been since 1972.
        """
        if self.start is not None and self.end is not None:
            for moment in (self.start, self.end):
                if moment > now:
                    return moment
            return None
        zone = self.time_zone
        state = self.active(now)
        limit = now + horizon
        at = int(now // 60) * 60
        while True:
            local = datetime.datetime.fromtimestamp(at, zone)
            minute = local.hour * 60 + local.minute
            index = bisect.bisect_right(self._cuts, minute)
            upcoming = self._cuts[index] if index < len(self._cuts) else _DAY
            step = at + (upcoming - minute) * 60
            offset = local.utcoffset()
            if utc_offset(step, zone) != offset:
                step = offset_change(at, step, offset, zone)
            if step > limit:
                return None
            if self.active(step) != state:
                return float(step)
            at = step

    def mute_decision(self, now: float) -> MuteDecision:
        """Describe this window as the reason an incident is muted at `now`."""
        until = self.next_change(now) if self.active(now) else None
        ending = f" until {format_time(until)}" if until is not None else ""
        return MuteDecision(
            kind="maintenance",
            name=self.name,
            reason=f"muted by maintenance window {self.name}{ending}",
            until=until,
            counted_as=self.name,
        )


def utc_offset(moment: int, zone: datetime.tzinfo) -> datetime.timedelta | None:
    """Return the zone's UTC offset at an epoch second (None for a zone without one)."""
    return datetime.datetime.fromtimestamp(moment, zone).utcoffset()


def offset_change(
    before: int, after: int, offset: datetime.timedelta | None, zone: datetime.tzinfo
) -> int:
    """Return the first minute in (before, after] whose UTC offset differs from `offset`."""
    while after - before > 60:
        middle = before + (after - before) // 120 * 60
        if utc_offset(middle, zone) == offset:
            before = middle
        else:
            after = middle
    return after


class MaintenanceCalendar:
    """The configured windows, asked together by the engine."""

    __slots__ = ("windows",)

    def __init__(self, *, windows: Iterable[MaintenanceWindow]) -> None:
        self.windows = tuple(windows)

    def matching(self, labels: Mapping[str, str], *, now: float) -> list[MaintenanceWindow]:
        """Return the windows open at `now` whose matchers match, in config order."""
        return [w for w in self.windows if w.matches(labels) and w.active(now)]

    def next_change(self, now: float, *, horizon: float = HORIZON) -> float | None:
        """Return when any window next opens or closes, else None."""
        moments = [w.next_change(now, horizon=horizon) for w in self.windows]
        return min((m for m in moments if m is not None), default=None)


# ---------------------------------------------------------------------------------------------
# Parsing from YAML

_WINDOW_KEYS = ("name", "matchers", "time_zone", "intervals", "start", "end")
_INTERVAL_KEYS = ("weekdays", "times", "days_of_month", "months")
_TIME = re.compile(r"(\d{1,2}):(\d{2})")
_EXAMPLE_START = "2026-12-05T22:00:00+01:00"


def parse_windows(data: Any, where: Mark) -> list[MaintenanceWindow]:
    """Parse a `maintenance:` section (a list of windows); empty means none."""
    if data is None:
        return []
    return parse_named(data, where, "'maintenance'", "maintenance window", _window)


def _window(spec: Any, where: Mark, number: int) -> MaintenanceWindow:
    data = expect_map(spec, where, "a maintenance window")
    raw_name = data.get("name")
    # Errors name the window, or give its position in the list while it has no usable name.
    label = f"'{raw_name.strip()}'" if isinstance(raw_name, str) and raw_name.strip() else number

    def errors(at: Mark, message: str) -> SourceError:
        return SourceError(at, f"maintenance window {label}: {message}")

    check_keys(data, _WINDOW_KEYS, "option", errors, required=("name",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    name = expect_str(raw_name, at("name"), "'name'", errors).strip()
    if not name:
        raise errors(at("name"), "'name' must not be empty")
    if "matchers" not in data:
        raise errors(data.mark, "missing required key 'matchers'")
    matchers = parse_matchers(data["matchers"], at("matchers"), errors)
    problem = matchers.unselective_reason()
    if problem is not None:
        raise errors(at("matchers"), f"'matchers' {problem}")
    zone = (
        parse_time_zone(data["time_zone"], at("time_zone"), errors) if "time_zone" in data else _UTC
    )

    one_off = [k for k in ("start", "end") if k in data]
    if "intervals" in data and one_off:
        raise errors(
            key_mark(data, one_off[0], where),
            "give either 'intervals' (recurring) or 'start' and 'end' (one-off), not both",
        )
    if one_off:
        if len(one_off) == 1:
            missing = "end" if one_off[0] == "start" else "start"
            raise errors(
                data.mark, f"a one-off window needs both 'start' and 'end' ('{missing}' is missing)"
            )
        start = _moment(data["start"], at("start"), "'start'", errors)
        end = _moment(data["end"], at("end"), "'end'", errors)
        if end <= start:
            raise errors(at("end"), "'end' must be after 'start'")
        return MaintenanceWindow(
            name=name, matchers=matchers, time_zone=zone, start=start, end=end, where=where
        )
    if "intervals" not in data:
        raise errors(data.mark, "needs 'intervals' (recurring) or 'start' and 'end' (one-off)")
    items = expect_list(data["intervals"], at("intervals"), "'intervals'", errors)
    if not items:
        raise errors(at("intervals"), "'intervals' needs at least one interval")
    intervals = tuple(
        _interval(item, value_mark(items, i, at("intervals")), errors)
        for i, item in enumerate(items)
    )
    return MaintenanceWindow(
        name=name, matchers=matchers, time_zone=zone, intervals=intervals, where=where
    )


def parse_time_zone(value: Any, where: Mark, errors: Errors) -> datetime.tzinfo:
    """Read an IANA time zone name; an unknown one is an error at its file:line."""
    name = expect_str(value, where, "'time_zone'", errors)
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise errors(
            where, f"unknown time zone '{name}' (use an IANA name like Europe/Berlin or UTC)"
        ) from None


def _moment(value: Any, where: Mark, what: str, errors: Errors) -> float:
    """Read a date and time with a UTC offset (YAML may already have made it a datetime)."""
    moment: datetime.datetime | None = None
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
        if moment is not None and len(value.strip()) <= len("2026-12-05"):
            moment = None  # a bare date
    if moment is None:
        raise errors(where, f"{what} must be a date and time like {_EXAMPLE_START}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise errors(where, f"{what} needs a UTC offset, like {_EXAMPLE_START}")
    return moment.timestamp()


def _interval(spec: Any, where: Mark, errors: Errors) -> Interval:
    data = expect_map(spec, where, "an interval", errors)
    check_keys(data, _INTERVAL_KEYS, "interval option", errors)
    if not data:
        raise errors(where, f"an interval needs at least one of {', '.join(_INTERVAL_KEYS)}")

    def items(key: str) -> list[tuple[Any, Mark]]:
        at = value_mark(data, key, where)
        found = expect_list(data[key], at, f"'{key}'", errors)
        if not found:
            raise errors(at, f"'{key}' must list at least one entry")
        return [(item, value_mark(found, i, at)) for i, item in enumerate(found)]

    weekdays = months = None
    days: tuple[DayRange, ...] | None = None
    times: tuple[TimeRange, ...] = ()
    if "weekdays" in data:
        weekdays = frozenset(
            d for item, at in items("weekdays") for d in parse_cyclic(item, at, "weekday", errors)
        )
    if "months" in data:
        months = frozenset(
            m + 1 for item, at in items("months") for m in parse_cyclic(item, at, "month", errors)
        )
    if "days_of_month" in data:
        days = tuple(_day_range(item, at, errors) for item, at in items("days_of_month"))
    if "times" in data:
        times = tuple(_time_range(item, at, errors) for item, at in items("times"))
    return Interval(weekdays=weekdays, times=times, days_of_month=days, months=months)


def _sexagesimal_hint(value: int) -> str:
    """Explain YAML 1.1 reading unquoted `1:7` as 67 (base 60), when that is likely."""
    if abs(value) < 60:
        return ""
    high, low = divmod(abs(value), 60)
    sign = "-" if value < 0 else ""
    return f" (write ranges in quotes: unquoted, YAML reads {sign}{high}:{low} as {value})"


def parse_weekdays(value: Any, where: Mark, errors: Errors) -> frozenset[int]:
    """Read a non-empty `weekdays:` list of days and ranges (mon:fri) as 0-based weekdays."""
    days = expect_list(value, where, "'weekdays'", errors)
    if not days:
        raise errors(where, "'weekdays' must list at least one day")
    return frozenset(
        d
        for i, item in enumerate(days)
        for d in parse_cyclic(item, value_mark(days, i, where), "weekday", errors)
    )


def parse_cyclic(item: Any, where: Mark, kind: str, errors: Errors) -> list[int]:
    """Read a weekday or month, or a range `a:b` of them that may wrap; 0-based indexes."""
    names = WEEKDAYS if kind == "weekday" else MONTHS
    if isinstance(item, int) and not isinstance(item, bool) and kind == "month":
        if not 1 <= item <= 12:
            raise errors(where, f"month {item} is not from 1 to 12{_sexagesimal_hint(item)}")
        return [item - 1]
    text = expect_str(item, where, f"a {kind}", errors)
    parts = text.split(":")
    if len(parts) > 2:
        raise errors(where, f"{kind} range '{text}' must look like first:last")
    first, *rest = (
        _cyclic_one(p.strip(), text=text, where=where, kind=kind, names=names, errors=errors)
        for p in parts
    )
    last = rest[0] if rest else first
    count = (last - first) % len(names) + 1
    return [(first + i) % len(names) for i in range(count)]


def _cyclic_one(
    word: str, *, text: str, where: Mark, kind: str, names: tuple[str, ...], errors: Errors
) -> int:
    lowered = word.lower()
    if kind == "month" and lowered.isdigit():
        number = int(lowered)
        if 1 <= number <= 12:
            return number - 1
        raise errors(where, f"month {number} in '{text}' is not from 1 to 12")
    for index, name in enumerate(names):
        if lowered in (name, name[:3]):
            return index
    hint = did_you_mean(lowered, names)
    raise errors(
        where, f"unknown {kind} '{word}'{hint}; use names like {names[0]} or {names[0][:3]}"
    )


def _day_number(word: str, text: str, where: Mark, errors: Errors) -> int:
    try:
        number = int(word)
    except ValueError:
        raise errors(where, f"day of month '{text}' must be a number or a range like 1:7") from None
    if number == 0 or not -31 <= number <= 31:
        raise errors(where, f"day of month {number} is not from 1 to 31 or -31 to -1")
    return number


def _day_range(item: Any, where: Mark, errors: Errors) -> DayRange:
    """Read a day of the month or a range `first:last` (Alertmanager's rules for negatives)."""
    if isinstance(item, int) and not isinstance(item, bool):
        if item == 0 or not -31 <= item <= 31:
            raise errors(
                where,
                f"day of month {item} is not from 1 to 31 or -31 to -1{_sexagesimal_hint(item)}",
            )
        return DayRange(item, item)
    text = expect_str(item, where, "a day of month", errors)
    parts = text.split(":")
    if len(parts) > 2:
        raise errors(where, f"day of month range '{text}' must look like first:last")
    first = _day_number(parts[0].strip(), text, where, errors)
    last = _day_number(parts[-1].strip(), text, where, errors)
    if (first > 0) == (last > 0) and first > last:
        raise errors(where, f"day of month range '{text}' runs backwards")
    return DayRange(first, last)


def parse_clock(value: Any, where: Mark, what: str, errors: Errors, *, end: bool) -> int:
    """Read `HH:MM` as minutes of the day; `24:00` only as an end."""
    if isinstance(value, int) and not isinstance(value, bool):
        high, low = divmod(value, 60)
        raise errors(
            where,
            f'{what} must be quoted text like "22:00": unquoted, YAML reads {high}:{low:02d} '
            f"as the number {value}",
        )
    text = expect_str(value, where, what, errors)
    found = _TIME.fullmatch(text.strip())
    minutes = -1
    if found is not None:
        hours, mins = int(found.group(1)), int(found.group(2))
        if mins < 60 and (hours < 24 or (end and hours == 24 and mins == 0)):
            minutes = hours * 60 + mins
    if minutes < 0:
        latest = "24:00" if end else "23:59"
        raise errors(where, f"{what} must be a time from 00:00 to {latest}, not '{text}'")
    return minutes


def _time_range(spec: Any, where: Mark, errors: Errors) -> TimeRange:
    data = expect_map(spec, where, "a time range", errors)
    check_keys(data, ("start", "end"), "time range option", errors, required=("start", "end"))
    start = parse_clock(
        data["start"], value_mark(data, "start", where), "'start'", errors, end=False
    )
    end = parse_clock(data["end"], value_mark(data, "end", where), "'end'", errors, end=True)
    if start == end:
        raise errors(where, "a time range must not start and end at the same time")
    return TimeRange(start, end)
