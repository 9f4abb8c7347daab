"""Business hours: which instants count towards an SLA, on local wall-clock time.

An instant is business time when its local wall-clock reading in `time_zone` falls on a
business day (a listed weekday that is not a holiday) between `from` and `to`. So a day whose
clock skips an hour has an hour less of it, and a day whose clock repeats one has an hour more,
when that hour lies within the opening hours. Hours whose `to` is not after `from` run past
midnight and belong to the day they start on. Zone offsets are taken to be whole minutes (as
every zone's has been since 1972) and to change at most once a day.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from tocsin.mute import LATEST
from tocsin.mute.schedule import offset_change, parse_clock, parse_time_zone, parse_weekdays
from tocsin.rules.schema import Errors, check_keys, expect_list, expect_map, plain_errors
from tocsin.yamlsrc import Mark, value_mark

__all__ = ["ALWAYS", "AlwaysOpen", "BusinessHours", "Calendar", "parse_business_hours"]

_DAY = 86400
_EPOCH = datetime.date(1970, 1, 1)  # a Thursday: weekday 3 when Monday is 0
_KEYS = ("time_zone", "weekdays", "from", "to", "holidays")
_WORKWEEK = frozenset(range(5))


class Calendar(Protocol):
    """Counts time the way an SLA does: ALWAYS (24x7) or BusinessHours."""

    def add(self, start: float, seconds: float) -> float:
        """Return the instant when `seconds` of counted time have passed after `start`."""

    def elapsed(self, start: float, end: float) -> float:
        """Return how many seconds of counted time lie between `start` and `end`."""


@dataclass(frozen=True, slots=True)
class AlwaysOpen:
    """Every second counts (24x7): the calendar of an SLA without business hours."""

    def add(self, start: float, seconds: float) -> float:
        """Return `start + seconds`."""
        if seconds < 0:
            raise ValueError("cannot add negative business time")
        return start + seconds

    def elapsed(self, start: float, end: float) -> float:
        """Return the seconds from `start` to `end` (0 when `end` is not after it)."""
        return max(end - start, 0.0)


ALWAYS = AlwaysOpen()


def _offset(moment: float, zone: datetime.tzinfo) -> float:
    """Return the zone's UTC offset at `moment` in seconds."""
    offset = datetime.datetime.fromtimestamp(moment, zone).utcoffset()
    return 0.0 if offset is None else offset.total_seconds()


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """Opening hours on business days in one time zone; holidays are local dates."""

    time_zone: datetime.tzinfo
    opens: int  # minute of the day
    closes: int  # minute of the day, up to 1440; not after `opens`: runs past midnight
    weekdays: frozenset[int] = _WORKWEEK  # 0 is Monday
    holidays: frozenset[datetime.date] = frozenset()
    where: Mark | None = field(default=None, compare=False)
    _closed: frozenset[int] = field(init=False, repr=False, compare=False)  # holidays, as days

    def __post_init__(self) -> None:
        if not self.weekdays or not self.weekdays <= set(range(7)):
            raise ValueError("business hours need weekdays from 0 (Monday) to 6")
        if not (0 <= self.opens < 1440 and 0 <= self.closes <= 1440 and self.opens != self.closes):
            raise ValueError(f"invalid opening hours {self.opens}-{self.closes}")
        closed = frozenset((day - _EPOCH).days for day in self.holidays)
        object.__setattr__(self, "_closed", closed)

    def add(self, start: float, seconds: float) -> float:
        """Return the instant when `seconds` of business time have passed after `start`.

        From outside the hours it counts from the next opening, so 0 seconds gives that
        opening; a result at a closing time is the end of that day's hours, not the next
        opening. Costs one step per day spanned. Raises ValueError past the year 9999.
        """
        if seconds < 0:
            raise ValueError("cannot add negative business time")
        if start + seconds > LATEST:  # business time never runs faster than real time
            raise ValueError("business time runs past the year 9999")
        remaining = seconds
        spans = self._spans(start)
        while True:
            begin, end = next(spans)
            if remaining <= end - begin:
                return begin + remaining
            remaining -= end - begin

    def elapsed(self, start: float, end: float) -> float:
        """Return how many seconds of business time lie between `start` and `end`."""
        total = 0.0
        if end <= start:
            return total
        for begin, until in self._spans(start):
            if begin >= end:
                break
            total += min(until, end) - begin
        return total

    def _spans(self, start: float) -> Iterator[tuple[float, float]]:
        """Yield the business-time spans from `start` on, in order, the first clipped to it.

        Walks a day at a time (less where the zone's offset changes): within such a stretch
        local time is epoch time plus one offset, so its business hours are plain arithmetic.
        """
        zone = self.time_zone
        at = start
        offset = _offset(at, zone)
        span = ((self.closes - self.opens) % 1440 or 1440) * 60
        while True:
            if at > LATEST - 2 * _DAY:
                raise ValueError("business time runs past the year 9999")
            until = at + _DAY
            following = _offset(until, zone)
            if following != offset:
                was = datetime.timedelta(seconds=offset)
                change = offset_change(int(at) // 60 * 60, math.ceil(until / 60) * 60, was, zone)
                until = max(float(change), at + 60)
                following = _offset(until, zone)
            # Local days this stretch touches, and the one before (its hours may run past 00:00).
            first = math.floor((at + offset) / _DAY) - 1
            last = math.floor((until + offset) / _DAY)
            for day in range(first, last + 1):
                if (day + 3) % 7 not in self.weekdays or day in self._closed:
                    continue
                opening = day * _DAY + self.opens * 60 - offset
                begin, end = max(opening, at), min(opening + span, until)
                if begin < end:
                    yield begin, end
            at, offset = until, following


def parse_business_hours(spec: Any, where: Mark, errors: Errors = plain_errors) -> BusinessHours:
    """Parse a `business_hours:` mapping; weekdays default to monday:friday."""
    data = expect_map(spec, where, "'business_hours'", errors)
    check_keys(data, _KEYS, "business hours option", errors, required=("time_zone", "from", "to"))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    zone = parse_time_zone(data["time_zone"], at("time_zone"), errors)
    opens = parse_clock(data["from"], at("from"), "'from'", errors, end=False)
    closes = parse_clock(data["to"], at("to"), "'to'", errors, end=True)
    if opens == closes:
        raise errors(at("to"), "'to' must differ from 'from' (for 24 hours use 00:00 to 24:00)")
    weekdays = _WORKWEEK
    if "weekdays" in data:
        weekdays = parse_weekdays(data["weekdays"], at("weekdays"), errors)
    holidays: frozenset[datetime.date] = frozenset()
    if data.get("holidays") is not None:
        found = expect_list(data["holidays"], at("holidays"), "'holidays'", errors)
        holidays = frozenset(
            _date(item, value_mark(found, i, at("holidays")), errors)
            for i, item in enumerate(found)
        )
    return BusinessHours(
        time_zone=zone,
        opens=opens,
        closes=closes,
        weekdays=weekdays,
        holidays=holidays,
        where=where,
    )


def _date(value: Any, where: Mark, errors: Errors) -> datetime.date:
    """Read a local date like 2026-12-25 (YAML may already have made it a date)."""
    if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise errors(where, f"a holiday must be a date like 2026-12-25, not {value!r}")
