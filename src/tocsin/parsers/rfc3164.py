"""BSD syslog (RFC 3164) as syslogd and rsyslog write it, with BSD or RFC 3339 stamps."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import tzinfo
from typing import Any

from tocsin.model import Event
from tocsin.parsers.base import LineParser
from tocsin.parsers.pri import PRI
from tocsin.parsers.timestamps import MONTHS, StampCache, YearTracker

__all__ = ["SyslogParser"]

_LINE = re.compile(
    r"(?:<(\d{1,3})>)?"
    r"(?:([A-Z][a-z][a-z] [ \d]?\d \d\d:\d\d:\d\d)"  # "Nov  5 18:30:21"
    r"|(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)?)"  # rsyslog high precision
    r" +(\S+)"  # host
    r"(?: +([^\s\[\]:]+)(?:\[([^\]]*)\])?:(?= |$))?"  # "program[pid]:", optional
    r" ?(.*)",
    re.DOTALL,
)


class SyslogParser(LineParser):
    """Parses "<PRI>Mmm dd hh:mm:ss host program[pid]: message", yearless stamps via a tracker."""

    name = "syslog"

    def __init__(
        self,
        *,
        origin: str,
        source: str,
        year: int | None,
        tz: tzinfo | None,
        now: Callable[[], float],
    ) -> None:
        super().__init__(origin=origin, source=source)
        self._stamps = StampCache(tz=tz)
        self._years = YearTracker(year=year, now=now, tz=tz)
        self._last_stamp = ""  # lines come in bursts within one second: skip even the cache
        self._last_epoch = 0.0

    def parse(self, line: str, received: float) -> Event | None:
        """Return the event of a BSD syslog line, None if the line is not one."""
        match = _LINE.match(line)
        if match is None:
            return None
        pri, bsd, base, fraction, offset, host, program, pid, message = match.groups()
        fields: dict[str, Any] = {}
        if pri is None:
            level = "info"
        else:
            known = PRI.get(pri)
            if known is None:
                return None
            level, fields["facility"] = known
        if bsd is not None:
            if bsd == self._last_stamp:
                epoch: float | None = self._last_epoch
            else:
                epoch = self._bsd_epoch(bsd)
        else:
            epoch = self._stamps.rfc3339(base, offset)
            if epoch is not None and fraction is not None:
                epoch += float(fraction)
        if epoch is None:
            return None
        if pid:
            fields["pid"] = pid
        return Event(
            time=epoch,
            received=received,
            source=self.source,
            origin=self.origin,
            host=host,
            program=program or "",
            level=level,
            message=message,
            fields=fields,
        )

    def _bsd_epoch(self, stamp: str) -> float | None:
        """Return the epoch of a BSD stamp not seen on the previous line, None if it is no date."""
        month = MONTHS.get(stamp[:3])
        if month is None:
            return None
        epoch = self._stamps.bsd(self._years.year_of(month), stamp)
        if epoch is not None:
            self._last_stamp = stamp
            self._last_epoch = epoch
        return epoch
