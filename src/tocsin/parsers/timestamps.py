"""Timestamp text to epoch seconds, cached because consecutive log lines repeat their second."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo

__all__ = ["MONTHS", "StampCache", "YearTracker", "epoch_of_number"]

MONTHS: dict[str, int] = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}

# ISO 8601 as loggers write it: "T" or space, "." or "," before the fraction, offset optional.
_ISO = re.compile(
    r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(?:[.,](\d{1,9}))?\s*([Zz]|[+-]\d\d:?\d\d)?"
)

_CACHE_LIMIT = 4096
_UNKNOWN: float = -1.0  # marks a cache miss: no real hour starts at -1 s


class StampCache:
    """Epoch seconds per timestamp text: a datetime per line would cost more than the parse."""

    __slots__ = ("_epochs", "_hours", "_tz")

    def __init__(self, *, tz: tzinfo | None) -> None:
        self._tz = tz
        self._epochs: dict[tuple[int | str, str], float] = {}
        self._hours: dict[tuple[int, int, int, int], float | None] = {}

    def bsd(self, year: int, stamp: str) -> float | None:
        """Return the epoch of a BSD stamp ("Nov  5 18:30:21") in `year`, None if no such date.

        Busy logs change second on almost every line, so a miss must be cheap too: the epoch
        of each hour is computed once (zone offsets change on the hour) and the rest added.
        """
        month_name, day_text, clock = stamp.split()
        hour_text, minute_text, second_text = clock.split(":")
        minute, second = int(minute_text), int(second_text)
        if minute > 59 or second > 59:
            return None
        key = (year, MONTHS[month_name], int(day_text), int(hour_text))
        base = self._hours.get(key, _UNKNOWN)
        if base is _UNKNOWN:
            if len(self._hours) >= _CACHE_LIMIT:
                self._hours.clear()
            base = self._hours[key] = self._hour_epoch(*key)
        return None if base is None else base + minute * 60 + second

    def _hour_epoch(self, year: int, month: int, day: int, hour: int) -> float | None:
        """Return the epoch at the start of an hour in this zone, None if there is no such hour."""
        try:
            return _timestamp(datetime(year, month, day, hour, tzinfo=self._tz))
        except ValueError:
            return None

    def rfc3339(self, base: str, offset: str | None) -> float | None:
        """Return the epoch of "YYYY-MM-DDThh:mm:ss" (any separator, no fraction) and offset."""
        key = (base, offset or "")
        epoch = self._epochs.get(key)
        if epoch is None:
            epoch = self._remember(key, base, offset or "")
        return epoch

    def iso(self, text: str) -> float | None:
        """Return the epoch of an ISO 8601 string as loggers write them, None if it is not one."""
        match = _ISO.match(text)
        if match is not None:
            base, fraction, offset = match.groups()
            seconds = self.rfc3339(base, offset)
            if seconds is None or fraction is None:
                return seconds
            return seconds + float(f"0.{fraction}")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        return _timestamp(parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=self._tz))

    def _remember(self, key: tuple[int | str, str], base: str, offset: str) -> float | None:
        """Compute an epoch the slow way and keep it; a full cache is dropped, not managed."""
        try:
            moment = datetime(
                int(base[0:4]),
                int(base[5:7]),
                int(base[8:10]),
                int(base[11:13]),
                int(base[14:16]),
                int(base[17:19]),
                tzinfo=self._tz if not offset else _zone_of_offset(offset),
            )
        except ValueError:
            return None
        epoch = _timestamp(moment)
        if epoch is not None:
            if len(self._epochs) >= _CACHE_LIMIT:
                self._epochs.clear()
            self._epochs[key] = epoch
        return epoch


def _zone_of_offset(offset: str) -> tzinfo:
    """Return the fixed zone of "Z", "+01:00" or "+0100"."""
    if offset in ("Z", "z"):
        return UTC
    sign = -1 if offset[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[-2:])))


def _timestamp(moment: datetime) -> float | None:
    """Return moment.timestamp(), None where the platform cannot convert it (naive, far out)."""
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def epoch_of_number(value: float) -> float | None:
    """Return epoch seconds of a logged number in s, ms, µs or ns; None if it is not finite."""
    try:
        seconds = float(value)
    except OverflowError:
        return None
    if not math.isfinite(seconds):
        return None
    while seconds > 1e11:  # 1e11 s is the year 5138: anything larger is a finer unit
        seconds /= 1000
    return seconds


class YearTracker:
    """Gives yearless BSD stamps a year and follows one stream of them across New Year."""

    __slots__ = ("_fixed", "_month", "_now", "_tz", "_year")

    def __init__(self, *, year: int | None, now: Callable[[], float], tz: tzinfo | None) -> None:
        self._fixed = year
        self._now = now
        self._tz = tz
        self._year = 0
        self._month = 0  # month of the last line; 0 before the first one

    def year_of(self, month: int) -> int:
        """Return the year of a line stamped in `month`, moving the stream's year when it rolls."""
        last = self._month
        if month == last:
            return self._year
        if last == 0:
            self._year = self._fixed if self._fixed is not None else self._guess(month)
        elif month < last - 6:  # e.g. Dec -> Jan: the file went past New Year
            self._year += 1
        elif month > last + 6:  # e.g. Jan -> Dec: a late line from last year, or a long silence
            self._year = self._year - 1 if self._fixed is not None else self._guess(month)
        self._month = month
        return self._year

    def _guess(self, month: int) -> int:
        """Return the year a line of `month` most likely has when read now (clock skew allowed)."""
        today = datetime.fromtimestamp(self._now(), self._tz)
        ahead = month - today.month
        if ahead > 1:  # more than a month in the future: it is from last year
            return today.year - 1
        if ahead < -10 and today.day == 31:
            # A January line read on New Year's Eve: the sender's clock is already past midnight.
            # (Any other December day, a January line is from the start of this year.)
            return today.year + 1
        return today.year
