"""IETF syslog (RFC 5424): "<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG"."""

from __future__ import annotations

import re
from datetime import tzinfo
from typing import Any

from tocsin.model import Event
from tocsin.parsers.base import LineParser
from tocsin.parsers.pri import PRI
from tocsin.parsers.timestamps import StampCache

__all__ = ["Rfc5424Parser", "parse_structured_data"]

_NAME = r'[^\s=\]"]+'  # SD-NAME: printable US-ASCII except '=', ' ', ']' and '"'
_VALUE = r'[^"\\]*(?:\\.[^"\\]*)*'  # PARAM-VALUE in its quotes: '"', '\' and ']' escaped by '\'

_LINE = re.compile(
    r"<(\d{1,3})>1 "
    r"(?:-|(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)?) "
    r"(\S+) (\S+) (\S+) (\S+) "
    rf'(-|(?:\[{_NAME}(?: {_NAME}="{_VALUE}")*\])+)'
    r"(?: \ufeff?(.*))?",
    re.DOTALL,
)
# Inside SD text the line pattern already accepted: "[id" opens an element, ' name="value"' adds.
_SD_TOKENS = re.compile(rf'\[({_NAME})| ({_NAME})="({_VALUE})"', re.DOTALL)
_ESCAPED = re.compile(r'\\(["\\\]])')


def parse_structured_data(text: str) -> dict[str, dict[str, str]]:
    """Return {sd_id: {param: value}} of SD text _LINE accepted; a repeated param keeps its last."""
    data: dict[str, dict[str, str]] = {}
    params: dict[str, str] = {}
    for sd_id, name, value in _SD_TOKENS.findall(text):
        if sd_id:
            params = data.setdefault(sd_id, {})
        else:
            params[name] = _ESCAPED.sub(r"\1", value) if "\\" in value else value
    return data


def _nil(value: str) -> str:
    """Return a header field with RFC 5424's NILVALUE "-" as the empty string."""
    return "" if value == "-" else value


class Rfc5424Parser(LineParser):
    """Parses RFC 5424 lines; structured data goes to fields["sd"]."""

    name = "rfc5424"

    def __init__(self, *, origin: str, source: str, tz: tzinfo | None) -> None:
        super().__init__(origin=origin, source=source)
        self._stamps = StampCache(tz=tz)

    def parse(self, line: str, received: float) -> Event | None:
        """Return the event of an RFC 5424 line, None if the line is not one."""
        match = _LINE.fullmatch(line)
        if match is None:
            return None
        pri, base, fraction, offset, host, app, procid, msgid, sd, message = match.groups()
        known = PRI.get(pri)
        if known is None:
            return None
        level, facility = known
        fields: dict[str, Any] = {"facility": facility}
        if base is None:
            epoch = received
        else:
            seconds = self._stamps.rfc3339(base, offset)
            if seconds is None:
                return None
            epoch = seconds if fraction is None else seconds + float(fraction)
        if procid != "-":
            fields["procid"] = procid
        if msgid != "-":
            fields["msgid"] = msgid
        if sd != "-":
            fields["sd"] = parse_structured_data(sd)
        return Event(
            time=epoch,
            received=received,
            source=self.source,
            origin=self.origin,
            host=_nil(host),
            program=_nil(app),
            level=level,
            message=message or "",
            fields=fields,
        )
