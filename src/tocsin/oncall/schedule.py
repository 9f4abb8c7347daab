"""On-call schedules: layered rotations and overrides, evaluated on local wall-clock time.

A rotation hands off every `length` of wall-clock time from `start` in its schedule's
`time_zone`, so a 09:00 handoff stays at 09:00 across DST. A handoff whose wall time the clock
skips happens when the clock jumps past it; one whose wall time repeats happens the first time.
Later rotations win where they are active (PagerDuty layers); overrides win over every rotation,
a later override over an earlier one. An `active` restriction is read like a maintenance
interval: `from`-`to` may cross midnight, and weekdays are checked on the day it starts.
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass, field
from typing import Any

from tocsin.mute.schedule import (
    Interval,
    TimeRange,
    offset_change,
    parse_clock,
    parse_time_zone,
    parse_weekdays,
    utc_offset,
)
from tocsin.rules.schema import Errors, check_keys, expect_list, expect_map, expect_str, parse_named
from tocsin.yamlsrc import Mark, SourceError, value_mark

__all__ = ["OnCallSchedule", "Override", "Rotation", "Shift", "parse_oncall"]

# (from, until, who): one stretch of time with the same person on call.
Shift = tuple[float, float, str]

_DAY = datetime.timedelta(days=1)
_SHORTEST = datetime.timedelta(hours=1)
_LONGEST = datetime.timedelta(weeks=52)


def _instant(wall: datetime.datetime, zone: datetime.tzinfo) -> float:
    """Return the first instant whose local wall time is at or past the naive `wall`."""
    first = wall.replace(tzinfo=zone).timestamp()
    if datetime.datetime.fromtimestamp(first, zone).replace(tzinfo=None) == wall:
        return first
    # `wall` falls in a gap the clock skips: it is reached when the clock jumps over it.
    before = int(wall.replace(tzinfo=zone, fold=1).timestamp()) // 60 * 60
    return float(offset_change(before, math.ceil(first), utc_offset(before, zone), zone))


def _both(wall: datetime.datetime, zone: datetime.tzinfo) -> tuple[float, float]:
    """Return both readings of a wall time (they differ where the clock repeats or skips it)."""
    return wall.replace(tzinfo=zone).timestamp(), wall.replace(tzinfo=zone, fold=1).timestamp()


@dataclass(frozen=True, slots=True)
class Rotation:
    """One layer: `members` take turns, each for `length` of wall-clock time from `start`."""

    name: str
    time_zone: datetime.tzinfo
    start: datetime.datetime  # naive local wall time of the first handoff
    length: datetime.timedelta
    members: tuple[str, ...]
    active: Interval | None = None  # outside it this layer has nobody
    _first: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a rotation needs at least one member")
        if not _SHORTEST <= self.length <= _LONGEST:
            raise ValueError(f"rotation length {self.length} is out of range")
        object.__setattr__(self, "_first", _instant(self.start, self.time_zone))

    def handoff(self, index: int) -> float:
        """Return when turn `index` (0 is the first) begins."""
        return _instant(self.start + index * self.length, self.time_zone)

    def turn(self, at: float) -> int:
        """Return the index of the turn running at `at`; -1 before the first handoff."""
        if at < self._first:
            return -1
        wall = datetime.datetime.fromtimestamp(at, self.time_zone).replace(tzinfo=None)
        # Wall time and handoffs can disagree by a DST shift: settle on the exact turn.
        index = max((wall - self.start) // self.length, 0)
        while self.handoff(index + 1) <= at:
            index += 1
        while index > 0 and self.handoff(index) > at:
            index -= 1
        return index

    def member(self, at: float) -> str | None:
        """Return who this layer puts on call at `at`, or None (not started, or not active)."""
        if self.active is not None:
            local = datetime.datetime.fromtimestamp(at, self.time_zone)
            if not self.active.contains(local.date(), local.hour * 60 + local.minute):
                return None
        index = self.turn(at)
        return None if index < 0 else self.members[index % len(self.members)]

    def changes(self, start: float, end: float) -> set[float]:
        """Return instants in [start, end) and around it where this layer's answer may change."""
        found: set[float] = set()
        index = self.turn(start)
        while (moment := self.handoff(index + 1)) < end:
            found.add(moment)
            index += 1
        if self.active is None:
            return found
        minutes = {0}
        for span in self.active.times:
            minutes.update((span.start, span.end % 1440))
        day = datetime.datetime.fromtimestamp(start, self.time_zone).date() - _DAY
        last = datetime.datetime.fromtimestamp(end, self.time_zone).date() + _DAY
        while day <= last:
            midnight = datetime.datetime.combine(day, datetime.time())
            for minute in minutes:
                found.update(_both(midnight + datetime.timedelta(minutes=minute), self.time_zone))
            day += _DAY
        return found


@dataclass(frozen=True, slots=True)
class Override:
    """`who` is on call from `start` to `end` (epoch seconds), whatever the rotations say."""

    who: str
    start: float
    end: float

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("an override must end after it starts")


@dataclass(frozen=True, slots=True)
class OnCallSchedule:
    """A named schedule: rotations layered bottom to top, then overrides on top of all."""

    name: str
    time_zone: datetime.tzinfo
    rotations: tuple[Rotation, ...]
    overrides: tuple[Override, ...] = ()
    where: Mark | None = field(default=None, compare=False)

    def who(self, at: float) -> str | None:
        """Return who is on call at `at` (epoch seconds), or None when nobody is."""
        for override in reversed(self.overrides):
            if override.start <= at < override.end:
                return override.who
        for rotation in reversed(self.rotations):
            member = rotation.member(at)
            if member is not None:
                return member
        return None

    def shifts(self, start: float, end: float) -> list[Shift]:
        """Return who is on call over [start, end), clipped to it; times with nobody are left out.

        Consecutive stretches of the same person are merged, so each entry's end is a handoff
        (unless it is `end`).
        """
        if end <= start:
            return []
        moments = {start, *self._offset_changes(start, end)}
        for rotation in self.rotations:
            moments |= rotation.changes(start, end)
        for override in self.overrides:
            moments.update((override.start, override.end))
        cuts = sorted(m for m in moments if start <= m < end)
        found: list[Shift] = []
        for index, moment in enumerate(cuts):
            until = cuts[index + 1] if index + 1 < len(cuts) else end
            who = self.who(moment)
            if who is None:
                continue
            if found and found[-1][2] == who and found[-1][1] == moment:
                found[-1] = (found[-1][0], until, who)
            else:
                found.append((moment, until, who))
        return found

    def _offset_changes(self, start: float, end: float) -> list[float]:
        """Return where the zone's UTC offset changes in [start, end], to the minute."""
        zone = self.time_zone
        found: list[float] = []
        at = int(start) // 60 * 60
        while at < end:
            step = min(at + 86400, math.ceil(end / 60) * 60)
            offset = utc_offset(at, zone)
            if utc_offset(step, zone) != offset:
                found.append(float(offset_change(at, step, offset, zone)))
            at = step
        return found


# ---------------------------------------------------------------------------------------------
# Parsing from YAML

_SCHEDULE_KEYS = ("name", "time_zone", "rotations", "overrides")
_ROTATION_KEYS = ("name", "start", "length", "members", "active")
_ACTIVE_KEYS = ("weekdays", "from", "to")
_OVERRIDE_KEYS = ("who", "from", "to")
_LENGTH = re.compile(r"(\d+)\s*([hdw])")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}
_EXAMPLE_WALL = '"2026-01-05 09:00"'


def parse_oncall(spec: Any, where: Mark) -> dict[str, OnCallSchedule]:
    """Parse an `oncall:` section (a list of schedules) into schedules by name; empty: none."""
    if spec is None:
        return {}
    return {s.name: s for s in parse_named(spec, where, "'oncall'", "on-call schedule", _schedule)}


def _label(data: Any, key: str, number: int, kind: str) -> str:
    """Name an entry in errors, or give its position while it has no usable name."""
    raw = data.get(key)
    return f"{kind} '{raw.strip()}'" if isinstance(raw, str) and raw.strip() else f"{kind} {number}"


def _name(value: Any, where: Mark, what: str, errors: Errors) -> str:
    name = expect_str(value, where, what, errors).strip()
    if not name:
        raise errors(where, f"{what} must not be empty")
    return name


def _schedule(spec: Any, where: Mark, number: int) -> OnCallSchedule:
    data = expect_map(spec, where, "an on-call schedule")
    label = _label(data, "name", number, "on-call schedule")

    def errors(at: Mark, message: str) -> SourceError:
        return SourceError(at, f"{label}: {message}")

    check_keys(data, _SCHEDULE_KEYS, "option", errors, required=("name", "time_zone", "rotations"))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    name = _name(data["name"], at("name"), "'name'", errors)
    zone = parse_time_zone(data["time_zone"], at("time_zone"), errors)

    def rotation(item: Any, item_at: Mark, number: int) -> Rotation:
        return _rotation(item, item_at, number, zone, errors)

    rotations = parse_named(
        data["rotations"], at("rotations"), "'rotations'", "rotation", rotation, errors=errors
    )
    if not rotations:
        raise errors(at("rotations"), "'rotations' needs at least one rotation")
    overrides: list[Override] = []
    if data.get("overrides") is not None:
        found = expect_list(data["overrides"], at("overrides"), "'overrides'", errors)
        overrides = [
            _override(item, value_mark(found, i, at("overrides")), i + 1, zone, errors)
            for i, item in enumerate(found)
        ]
    return OnCallSchedule(
        name=name,
        time_zone=zone,
        rotations=tuple(rotations),
        overrides=tuple(overrides),
        where=where,
    )


def _rotation(
    spec: Any, where: Mark, number: int, zone: datetime.tzinfo, outer: Errors
) -> Rotation:
    data = expect_map(spec, where, "a rotation", outer)
    label = _label(data, "name", number, "rotation")

    def errors(at: Mark, message: str) -> SourceError:
        return outer(at, f"{label}: {message}")

    check_keys(
        data,
        _ROTATION_KEYS,
        "rotation option",
        errors,
        required=("name", "start", "length", "members"),
    )

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    name = _name(data["name"], at("name"), "'name'", errors)
    start = _wall(data["start"], at("start"), "'start'", errors)
    length = _length(data["length"], at("length"), errors)
    found = expect_list(data["members"], at("members"), "'members'", errors)
    if not found:
        raise errors(at("members"), "'members' needs at least one member")
    members = tuple(
        _name(item, value_mark(found, i, at("members")), "a member", errors)
        for i, item in enumerate(found)
    )
    active = _active(data["active"], at("active"), errors) if "active" in data else None
    return Rotation(
        name=name, time_zone=zone, start=start, length=length, members=members, active=active
    )


def _wall(value: Any, where: Mark, what: str, errors: Errors) -> datetime.datetime:
    """Read a local date and time (no UTC offset: the schedule's time_zone gives it)."""
    moment: datetime.datetime | None = None
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, str) and len(value.strip()) > len("2026-01-05"):
        try:
            moment = datetime.datetime.fromisoformat(value.strip())
        except ValueError:
            moment = None
    if moment is None:
        raise errors(where, f"{what} must be a local date and time like {_EXAMPLE_WALL}")
    if moment.tzinfo is not None:
        raise errors(
            where, f"{what} is local time in the schedule's time_zone: leave out the UTC offset"
        )
    return moment


def _length(value: Any, where: Mark, errors: Errors) -> datetime.timedelta:
    text = value.strip() if isinstance(value, str) else None
    found = _LENGTH.fullmatch(text) if text is not None else None
    if found is None:
        raise errors(where, f"'length' must be like 12h, 1d or 1w, not {value!r}")
    length = datetime.timedelta(**{_UNITS[found[2]]: int(found[1])})
    if not _SHORTEST <= length <= _LONGEST:
        raise errors(where, f"'length' must be from 1h to 52w, not {text}")
    return length


def _active(spec: Any, where: Mark, outer: Errors) -> Interval:
    data = expect_map(spec, where, "'active'", outer)

    def errors(at: Mark, message: str) -> SourceError:
        return outer(at, f"'active': {message}")

    check_keys(data, _ACTIVE_KEYS, "option", errors)
    if not data:
        raise errors(where, "give 'weekdays', or 'from' and 'to', or all three")
    given = [k for k in ("from", "to") if k in data]
    if len(given) == 1:
        missing = "to" if given[0] == "from" else "from"
        raise errors(data.mark, f"'from' and 'to' go together ('{missing}' is missing)")

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    weekdays = None
    if "weekdays" in data:
        weekdays = parse_weekdays(data["weekdays"], at("weekdays"), errors)
    times: tuple[TimeRange, ...] = ()
    if given:
        begin = parse_clock(data["from"], at("from"), "'from'", errors, end=False)
        end = parse_clock(data["to"], at("to"), "'to'", errors, end=True)
        if begin == end:
            raise errors(at("to"), "'to' must differ from 'from'")
        times = (TimeRange(begin, end),)
    return Interval(weekdays=weekdays, times=times)


def _override(
    spec: Any, where: Mark, number: int, zone: datetime.tzinfo, outer: Errors
) -> Override:
    data = expect_map(spec, where, "an override", outer)

    def errors(at: Mark, message: str) -> SourceError:
        return outer(at, f"override {number}: {message}")

    check_keys(data, _OVERRIDE_KEYS, "override option", errors, required=_OVERRIDE_KEYS)

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    who = _name(data["who"], at("who"), "'who'", errors)
    start = _instant(_wall(data["from"], at("from"), "'from'", errors), zone)
    end = _instant(_wall(data["to"], at("to"), "'to'", errors), zone)
    if end <= start:
        raise errors(at("to"), "'to' must be after 'from'")
    return Override(who=who, start=start, end=end)
