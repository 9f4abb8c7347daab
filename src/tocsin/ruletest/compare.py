"""Expected records against the records a case made: partial matching, and the diff text.

Only the keys an expectation gives are compared; nested mappings are partial too, lists must
have the same items in the same order, and text may be matched by `{regex: ...}` (a search)
or `{contains: ...}`. Times written as ISO 8601 match the instant whatever their offset.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ABSENT",
    "Mismatch",
    "Verdict",
    "describe",
    "judge",
    "mismatches",
    "show",
    "text_operator",
]


class _Absent:
    """What a record has for a field it does not have."""

    def __repr__(self) -> str:
        return "(no such field)"


ABSENT: Any = _Absent()


def text_operator(node: Mapping[Any, Any]) -> tuple[str, str] | None:
    """Return ("regex" or "contains", text) for a text pattern, else None."""
    if len(node) == 1:
        ((key, value),) = node.items()
        if key in ("regex", "contains") and isinstance(value, str):
            return key, value
    return None


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One place where a record is not as expected."""

    path: str
    expected: Any
    got: Any

    def __str__(self) -> str:
        return f"{self.path}: expected {show(self.expected)}, got {show(self.got)}"


def mismatches(expected: Any, actual: Any, path: str = "") -> list[Mismatch]:
    """Every place where `actual` differs from the pattern `expected`; none: it matches."""
    if isinstance(expected, Mapping):
        operator = text_operator(expected)
        if operator is not None and isinstance(actual, str):
            kind, text = operator
            found = re.search(text, actual) is not None if kind == "regex" else text in actual
            return [] if found else [Mismatch(path or "value", expected, actual)]
        if not isinstance(actual, Mapping):
            return [Mismatch(path or "value", expected, actual)]
        different: list[Mismatch] = []
        for key, value in expected.items():
            where = f"{path}.{key}" if path else str(key)
            if key in actual:
                different.extend(mismatches(value, actual[key], where))
            else:
                different.append(Mismatch(where, value, ABSENT))
        return different
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [Mismatch(path or "value", expected, actual)]
        return [
            found
            for index, (item, got) in enumerate(zip(expected, actual, strict=True))
            for found in mismatches(item, got, f"{path}[{index}]")
        ]
    return [] if _same(expected, actual) else [Mismatch(path or "value", expected, actual)]


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    if isinstance(expected, str) and isinstance(actual, str) and expected != actual:
        moment = _instant(expected)
        return moment is not None and moment == _instant(actual)
    return bool(expected == actual)


def _instant(text: str) -> float | None:
    """The epoch of an ISO 8601 time with an offset, else None."""
    if len(text) < 20 or not text[:4].isdigit():
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


@dataclass(slots=True)
class Verdict:
    """How the records of one kind differ from what was expected (all empty: they match)."""

    # (pattern, record) at the same place that differ: an ordered check's positions
    wrong: list[tuple[int, int, list[Mismatch]]] = field(default_factory=list)
    # patterns nothing matched, with the closest record and how it differs (if any record)
    missing: list[tuple[int, tuple[int, list[Mismatch]] | None]] = field(default_factory=list)
    unexpected: list[int] = field(default_factory=list)  # records no pattern took

    @property
    def ok(self) -> bool:
        """Whether the records are exactly as expected."""
        return not (self.wrong or self.missing or self.unexpected)


def judge(
    patterns: Sequence[Any], records: Sequence[Mapping[str, Any]], *, ordered: bool
) -> Verdict:
    """Match every pattern to its own record: by position, or as a multiset (the most
    patterns matched, so an overlapping earlier pattern cannot take a later one's record)."""
    verdict = Verdict()
    if ordered:
        for index, pattern in enumerate(patterns):
            if index >= len(records):
                verdict.missing.append((index, None))
                continue
            found = mismatches(pattern, records[index])
            if found:
                verdict.wrong.append((index, index, found))
        verdict.unexpected.extend(range(len(patterns), len(records)))
        return verdict
    fits = [[not mismatches(pattern, record) for record in records] for pattern in patterns]
    taken: dict[int, int] = {}  # record -> pattern

    def place(pattern: int, tried: set[int]) -> bool:
        for record, fit in enumerate(fits[pattern]):
            if fit and record not in tried:
                tried.add(record)
                if record not in taken or place(taken[record], tried):
                    taken[record] = pattern
                    return True
        return False

    matched = {pattern for pattern in range(len(patterns)) if place(pattern, set())}
    left = [record for record in range(len(records)) if record not in taken]
    shown: set[int] = set()
    for pattern in range(len(patterns)):
        if pattern not in matched:
            closest = _closest(patterns[pattern], records, left, shown)
            if closest is not None:
                shown.add(closest[0])
            verdict.missing.append((pattern, closest))
    verdict.unexpected.extend(left)
    return verdict


def _closest(
    pattern: Any, records: Sequence[Mapping[str, Any]], left: list[int], shown: set[int]
) -> tuple[int, list[Mismatch]] | None:
    """The record that differs in the fewest places: one nothing took if there is any; on a
    tie, the one that agrees on more of the pattern's first keys (people write what names a
    record first: its rule, its receiver), then one not shown for another pattern yet."""
    order = list(pattern) if isinstance(pattern, Mapping) else []
    best: tuple[tuple[int, int, bool], int, list[Mismatch]] | None = None
    for record in left or range(len(records)):
        found = mismatches(pattern, records[record])
        first = min((_position(m.path, order) for m in found), default=len(order))
        rank = (len(found), -first, record in shown)
        if best is None or rank < best[0]:
            best = (rank, record, found)
    return None if best is None else (best[1], best[2])


def _position(path: str, order: list[Any]) -> int:
    """Where the top-level key a mismatch is under comes in the pattern."""
    key = re.split(r"[.\[]", path, maxsplit=1)[0]
    return order.index(key) if key in order else 0


def show(value: Any) -> str:
    """Write a value compactly, mappings as {key: value}, text in JSON quotes."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{key}: {show(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(item) for item in value) + "]"
    if value is ABSENT:
        return repr(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def describe(kind: str, record: Mapping[str, Any]) -> str:
    """One line that tells a person which record this is."""
    get = record.get
    if kind == "incidents":
        muted = f", muted by {get('muted_by')}" if get("muted") else ""
        return (
            f"incident {get('id')}: rule {get('rule')} key {show(get('key'))}, {get('state')}, "
            f"{get('priority')}, count {get('count')}{muted}: {show(get('title'))}"
        )
    if kind == "notifications":
        user = f" for {get('user')}" if get("user") else ""
        return (
            f"{get('action')} to {get('receiver')}{user} about incidents "
            f"{show(get('incidents'))} ({get('reason')})"
        )
    if kind == "published":
        return f"{show(get('topic'))} on {get('broker')} by {get('rule')}: {show(get('payload'))}"
    if kind == "runs":
        return (
            f"run {get('id')} of {get('runbook')} for rule {get('rule')} key {show(get('key'))}: "
            f"{get('state')}, argv {show(get('argv'))}"
        )
    if kind == "problems":
        return (
            f"problem {get('id')}: {get('state')}, incidents {show(get('incidents'))}: "
            f"{show(get('title'))}"
        )
    if kind == "requests":
        return f"request {get('id')}: {get('item')}, {get('state')}, by {get('requested_by')}"
    if kind == "grants":
        return f"grant {get('id')}: {get('role')} for {get('subject')}, {get('state')}"
    return f"{get('action')} {get('role')} for {get('subject')} by {get('by')}: {show(get('why'))}"
