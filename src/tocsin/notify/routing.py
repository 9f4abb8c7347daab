"""The notification route tree (Alertmanager's `route:`): which receiver hears of an incident,
grouped how and how often. Pure: parsing and matching only; grouping.py keeps the state.

A child inherits its parent's receiver, group_by, timings, send_resolved and escalation
unless it sets them. Matching is Alertmanager's: depth first; a matching child without
`continue` stops its later siblings; a route none of whose children match is itself the match.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tocsin.mute.matchers import Matchers, check_label_name, parse_matchers
from tocsin.rules.schema import (
    check_keys,
    expect_bool,
    expect_list,
    expect_map,
    expect_str,
    parse_duration,
)
from tocsin.yamlsrc import Mark, MarkedMap, SourceError, did_you_mean, key_mark, value_mark

__all__ = ["ALL_LABELS", "Route", "parse_route"]

# `group_by: ['...']`: group by every label, which makes one group per incident.
ALL_LABELS = "..."

_ROOT_KEYS = (
    "receiver",
    "group_by",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "send_resolved",
    "escalation",
    "routes",
)
_CHILD_KEYS = (*_ROOT_KEYS, "matchers", "continue")
_DEFAULT_WAIT = 30.0
_DEFAULT_INTERVAL = 300.0
_DEFAULT_REPEAT = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class Route:
    """One node of the tree, with its inherited settings filled in; durations are seconds.

    `id` is a digest of the path of matchers from the root plus receiver and group_by, so a
    reload that keeps a route (even when siblings are added or moved) keeps its groups.
    `group_by` None means every label (one group per incident).
    """

    id: str
    receiver: str
    group_by: tuple[str, ...] | None
    group_wait: float
    group_interval: float
    repeat_interval: float
    send_resolved: bool
    escalation: str | None
    matchers: Matchers = field(default_factory=Matchers)
    continue_: bool = False
    routes: tuple[Route, ...] = ()
    where: Mark | None = field(default=None, compare=False)

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """Return the routes these labels go to, in tree order; [] when this one does not match."""
        if not self.matchers.matches(labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            matched = child.match(labels)
            if matched:
                found.extend(matched)
                if not child.continue_:
                    break
        return found or [self]

    def walk(self) -> Iterator[Route]:
        """Yield this route and every route below it, depth first."""
        yield self
        for child in self.routes:
            yield from child.walk()


# ---------------------------------------------------------------------------------------------
# Parsing from YAML


@dataclass(frozen=True, slots=True)
class _Names:
    """What routes may refer to, for checks and suggestions."""

    receivers: Collection[str]
    policies: Collection[str]


def parse_route(
    spec: Any, where: Mark, *, receivers: Collection[str], policies: Collection[str]
) -> Route:
    """Parse the `route:` section (the root route) of the incidents file."""
    data = expect_map(spec, where, "'route'")
    for key in ("matchers", "continue"):
        if key in data:
            raise SourceError(
                key_mark(data, key, where),
                f"the root route takes every incident, so it has no '{key}'; "
                "put routes with 'matchers' under 'routes'",
            )
    check_keys(data, _ROOT_KEYS, "route option")
    if "receiver" not in data:
        raise SourceError(
            data.mark, "the root route needs a 'receiver': who hears of what no child route takes"
        )
    top = Route(
        id="",
        receiver="",
        group_by=(),
        group_wait=_DEFAULT_WAIT,
        group_interval=_DEFAULT_INTERVAL,
        repeat_interval=_DEFAULT_REPEAT,
        send_resolved=True,
        escalation=None,
    )
    return _route(data, where, parent=top, prefix="", twins={}, names=_Names(receivers, policies))


def _route(
    data: MarkedMap,
    where: Mark,
    *,
    parent: Route,
    prefix: str,
    twins: dict[str, int],
    names: _Names,
) -> Route:
    """Build one route over its parent's settings, then its children.

    Its id digests `prefix` (its parent's path) and its own matchers, receiver and group_by;
    twin siblings (all three the same) are told apart by their count, kept in `twins`.
    """

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    def given(key: str) -> bool:
        return key in data

    receiver = (
        _receiver(data["receiver"], at("receiver"), names) if given("receiver") else parent.receiver
    )
    group_by = _group_by(data["group_by"], at("group_by")) if given("group_by") else parent.group_by
    matchers = parse_matchers(data["matchers"], at("matchers")) if given("matchers") else Matchers()
    shown_group_by = ALL_LABELS if group_by is None else ",".join(group_by)
    path = f"{prefix}/{matchers}>{receiver}>{shown_group_by}"
    twins[path] = twins.get(path, 0) + 1
    if twins[path] > 1:
        path = f"{path}#{twins[path]}"
    route = Route(
        id=hashlib.blake2b(path.encode(), digest_size=6).hexdigest(),
        receiver=receiver,
        group_by=group_by,
        group_wait=_duration(data, "group_wait", where, parent.group_wait, positive=False),
        group_interval=_duration(
            data, "group_interval", where, parent.group_interval, positive=True
        ),
        repeat_interval=_duration(
            data, "repeat_interval", where, parent.repeat_interval, positive=True
        ),
        send_resolved=(
            expect_bool(data["send_resolved"], at("send_resolved"), "'send_resolved'")
            if given("send_resolved")
            else parent.send_resolved
        ),
        escalation=(
            _policy(data["escalation"], at("escalation"), names)
            if given("escalation")
            else parent.escalation
        ),
        matchers=matchers,
        continue_=(
            expect_bool(data["continue"], at("continue"), "'continue'")
            if given("continue")
            else False
        ),
        where=where,
    )
    if data.get("routes") is None:
        return route
    items = expect_list(data["routes"], at("routes"), "'routes'")
    children: list[Route] = []
    siblings: dict[str, int] = {}
    for index, item in enumerate(items):
        item_at = value_mark(items, index, at("routes"))
        child = expect_map(item, item_at, "a route")
        check_keys(child, _CHILD_KEYS, "route option")
        children.append(
            _route(child, item_at, parent=route, prefix=path, twins=siblings, names=names)
        )
    return dataclasses.replace(route, routes=tuple(children))


def _receiver(value: Any, where: Mark, names: _Names) -> str:
    if value is None:
        raise SourceError(
            where, "'receiver' is empty: name a receiver, or leave it out to keep the parent's"
        )
    name = expect_str(value, where, "'receiver'").strip()
    if name not in names.receivers:
        raise SourceError(
            where,
            f"unknown receiver '{name}'{did_you_mean(name, names.receivers)} "
            "(receivers are defined under 'receivers')",
        )
    return name


def _policy(value: Any, where: Mark, names: _Names) -> str:
    name = expect_str(value, where, "'escalation'").strip()
    if name not in names.policies:
        raise SourceError(
            where,
            f"unknown escalation policy '{name}'{did_you_mean(name, names.policies)} "
            "(policies are defined under 'escalation_policies')",
        )
    return name


def _group_by(value: Any, where: Mark) -> tuple[str, ...] | None:
    items = expect_list(value, where, "'group_by'")
    if ALL_LABELS in items:
        if len(items) > 1:
            raise SourceError(
                where,
                f"'group_by' lists '{ALL_LABELS}' (every label) with other labels; "
                f"give ['{ALL_LABELS}'] alone, or only label names",
            )
        return None
    found: list[str] = []
    for index, item in enumerate(items):
        item_at = value_mark(items, index, where)
        name = check_label_name(item, item_at, "a group_by label")
        if name in found:
            raise SourceError(item_at, f"'group_by' lists '{name}' twice")
        found.append(name)
    return tuple(found)


def _duration(data: MarkedMap, key: str, where: Mark, inherited: float, *, positive: bool) -> float:
    if key not in data:
        return inherited
    at = value_mark(data, key, where)
    seconds = parse_duration(data[key], at, f"'{key}'")
    if positive and seconds <= 0:
        raise SourceError(at, f"'{key}' must be longer than zero, like 5m")
    return seconds
