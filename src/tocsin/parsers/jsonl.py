"""JSON lines as application loggers write them: one object per line, keys mapped by convention."""

from __future__ import annotations

import json
import re
from datetime import tzinfo
from typing import Any

from tocsin.model import LEVELS, Event
from tocsin.parsers.base import LineParser
from tocsin.parsers.timestamps import StampCache, epoch_of_number

__all__ = ["JsonParser", "level_of", "without_surrogates"]

_TIME_KEYS = ("time", "timestamp", "@timestamp", "ts")
_HOST_KEYS = ("host", "hostname")
_PROGRAM_KEYS = ("program", "app", "ident", "logger")
_LEVEL_KEYS = ("level", "severity", "lvl")
_MESSAGE_KEYS = ("message", "msg")

_LEVEL_NAMES: dict[str, str] = {
    **{name: name for name in LEVELS},
    **{str(number): name for number, name in enumerate(LEVELS)},
    "emergency": "emerg",
    "panic": "emerg",
    "critical": "crit",
    "fatal": "crit",
    "error": "err",
    "warn": "warning",
    "information": "info",
    "informational": "info",
    "trace": "debug",
}
# pino and bunyan log numeric levels 10..60; 0..7 are syslog numbers.
_LEVEL_NUMBERS: dict[int, str] = {
    **dict(enumerate(LEVELS)),
    10: "debug",
    20: "debug",
    30: "info",
    40: "warning",
    50: "err",
    60: "crit",
}

_decode = json.JSONDecoder().decode


def level_of(value: object) -> str:
    """Return the syslog keyword of a logged level (name, alias or number), "info" if unknown."""
    if isinstance(value, str):
        return _LEVEL_NAMES.get(value) or _LEVEL_NAMES.get(value.strip().lower(), "info")
    if isinstance(value, int) and not isinstance(value, bool):
        return _LEVEL_NUMBERS.get(value, "info")
    return "info"


def _first(record: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """Return the value of the first of `keys` the record has (not null), else None."""
    for key in keys:
        value = record.get(key)
        if value is not None:
            return value
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def without_surrogates(value: Any) -> Any:
    """Replace lone surrogates (from escapes like \\ud83d) with U+FFFD, at any depth."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {without_surrogates(k): without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_surrogates(v) for v in value]
    return value


def _text(value: object) -> str:
    """Return a string value as is and anything else as the empty string."""
    return value if isinstance(value, str) else ""


class JsonParser(LineParser):
    """Parses one JSON object per line; every key also goes to fields unchanged."""

    name = "json"

    def __init__(self, *, origin: str, source: str, tz: tzinfo | None) -> None:
        super().__init__(origin=origin, source=source)
        self._stamps = StampCache(tz=tz)

    def parse(self, line: str, received: float) -> Event | None:
        """Return the event of a JSON object line, None if the line is not one."""
        try:
            record = _decode(line)
        except (ValueError, RecursionError):
            return None
        if not isinstance(record, dict):
            return None
        if _SURROGATE_ESCAPE.search(line):  # only \uD800-\uDFFF escapes make lone surrogates
            record = without_surrogates(record)
        message = _first(record, _MESSAGE_KEYS)
        return Event(
            time=self._time(_first(record, _TIME_KEYS), received),
            received=received,
            source=self.source,
            origin=self.origin,
            host=_text(_first(record, _HOST_KEYS)),
            program=_text(_first(record, _PROGRAM_KEYS)),
            level=level_of(_first(record, _LEVEL_KEYS)),
            message=message if isinstance(message, str) else line,
            fields=record,
        )

    def _time(self, value: object, received: float) -> float:
        """Return epoch seconds of a logged time (ISO string or epoch number), else `received`."""
        epoch: float | None = None
        if isinstance(value, str):
            epoch = self._stamps.iso(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            epoch = epoch_of_number(value)
        return received if epoch is None else epoch
