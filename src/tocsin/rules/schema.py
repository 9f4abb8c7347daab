"""Strict, hand-written validation helpers: unknown keys are errors, every error has file:line."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

from tocsin.yamlsrc import (
    Mark,
    MarkedList,
    MarkedMap,
    SourceError,
    did_you_mean,
    key_mark,
    value_mark,
)

__all__ = [
    "Errors",
    "check_keys",
    "expect_bool",
    "expect_int",
    "expect_list",
    "expect_map",
    "expect_str",
    "format_duration",
    "kind_of",
    "parse_duration",
    "parse_named",
    "parse_path",
    "parse_size",
    "plain_errors",
]

# Turns (where, sentence) into the exception to raise; lets rules prefix "rule 'x': ".
Errors = Callable[[Mark, str], SourceError]


def plain_errors(where: Mark, message: str) -> SourceError:
    """Build an unprefixed SourceError."""
    return SourceError(where, message)


def kind_of(value: Any) -> str:
    """Name what a YAML or JSON value is, for "must be X, not Y" errors."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "empty"
    if isinstance(value, int | float):
        return "a number"
    return "text"


def expect_map(value: Any, where: Mark, what: str, errors: Errors = plain_errors) -> MarkedMap:
    """Return `value` if it is a mapping, else raise."""
    if isinstance(value, MarkedMap):
        return value
    if value is None:
        empty = MarkedMap()
        empty.mark, empty.key_marks, empty.value_marks = where, {}, {}
        return empty
    raise errors(where, f"{what} must be a mapping, not {kind_of(value)}")


def expect_list(value: Any, where: Mark, what: str, errors: Errors = plain_errors) -> MarkedList:
    """Return `value` if it is a list, else raise."""
    if isinstance(value, MarkedList):
        return value
    raise errors(where, f"{what} must be a list, not {kind_of(value)}")


def expect_items(
    value: Any, where: Mark, what: str, *, scalars: tuple[type, ...] = (str,)
) -> list[Any]:
    """Return the items of an option that takes one value or a list (none: no items)."""
    if value is None:
        return []
    if isinstance(value, scalars) and not isinstance(value, bool):
        return [value]
    return expect_list(value, where, what)


def expect_str(value: Any, where: Mark, what: str, errors: Errors = plain_errors) -> str:
    """Return `value` if it is text, else raise."""
    if isinstance(value, str):
        return value
    raise errors(where, f"{what} must be text, not {kind_of(value)}")


def expect_bool(value: Any, where: Mark, what: str, errors: Errors = plain_errors) -> bool:
    """Return `value` if it is true/false, else raise."""
    if isinstance(value, bool):
        return value
    raise errors(where, f"{what} must be true or false, not {kind_of(value)}")


def expect_int(
    value: Any, where: Mark, what: str, errors: Errors = plain_errors, *, minimum: int = 0
) -> int:
    """Return `value` if it is a whole number >= minimum, else raise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return value
    raise errors(where, f"{what} must be a whole number >= {minimum}")


class _Named(Protocol):
    """What parse_named needs of an entry: the name it is known by."""

    @property
    def name(self) -> str: ...


_NamedT = TypeVar("_NamedT", bound=_Named)


def parse_named(
    spec: Any,
    where: Mark,
    what: str,
    kind: str,
    parse_one: Callable[[Any, Mark, int], _NamedT],
    *,
    errors: Errors = plain_errors,
) -> list[_NamedT]:
    """Parse a list of named entries in order, so that a repeated name says where it came first.

    `parse_one` gets each item, where it is and its 1-based number; a repeat raises
    "duplicate KIND name 'x' (first defined at FILE:LINE:COL)" at the repeat's `name`.
    """
    items = expect_list(spec, where, what, errors)
    entries: list[_NamedT] = []
    seen: dict[str, Mark] = {}
    for index, item in enumerate(items):
        at = value_mark(items, index, where)
        entry = parse_one(item, at, index + 1)
        name_at = value_mark(item, "name", at)
        if entry.name in seen:
            raise errors(
                name_at,
                f"duplicate {kind} name '{entry.name}' (first defined at {seen[entry.name]})",
            )
        seen[entry.name] = name_at
        entries.append(entry)
    return entries


def check_keys(
    data: MarkedMap,
    allowed: Iterable[str],
    what: str,
    errors: Errors = plain_errors,
    *,
    required: Iterable[str] = (),
) -> None:
    """Reject unknown keys (with a suggestion) and missing required ones."""
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            shown = key if isinstance(key, str) else repr(key)
            raise errors(
                key_mark(data, key, data.mark),
                f"unknown {what} '{shown}'{did_you_mean(str(key), allowed)}",
            )
    for key in required:
        if key not in data:
            raise errors(data.mark, f"missing required key '{key}'")


def parse_path(base: Path, value: Any, where: Mark, what: str) -> Path:
    """Read a path; `~` is expanded and a relative one is taken from `base`."""
    path = Path(expect_str(value, where, what)).expanduser()
    return path if path.is_absolute() else base / path


_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB|)", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}


def _shown_size(size: int) -> str:
    """Write a bound the way a config would: 4KiB, 256MiB, 1GiB."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def parse_size(value: Any, where: Mark, what: str, *, least: int, most: int) -> int:
    """Parse a byte count: a number, or one with B, KiB, MiB or GiB; within [least, most]."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.fullmatch(expect_str(value, where, what).strip())
        if match is None:
            raise SourceError(where, f"{what} must be bytes, or a size like 512KiB or 8MiB")
        size = int(match[1]) * _SIZE_UNITS[match[2].lower()]
    if not least <= size <= most:
        raise SourceError(
            where, f"{what} must be between {_shown_size(least)} and {_shown_size(most)}"
        )
    return size


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def format_duration(seconds: float) -> str:
    """Write a duration the way a config would (what parse_duration reads): 7d, 8h, 90m, 1.5s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_duration(value: Any, where: Mark, what: str, errors: Errors = plain_errors) -> float:
    """Parse `250ms`, `10s`, `5m`, `1h`, `2d` or a bare number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    raise errors(where, f"{what} must be a duration like 250ms, 10s, 5m, 1h or 2d, not {value!r}")
