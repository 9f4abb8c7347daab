"""SLA timers per priority: when an incident nears and breaches its response and resolution times.

Pure: the caller passes `now`, appends what `check` returns to `incident.sla_fired`, and sets a
timer at `next_check`. Response runs from `opened_at` until the incident is acknowledged (or
resolved or closed without that); resolution until it is resolved (or closed). A stage that is
met fires nothing more, even a mark whose instant had passed before anyone checked. Times from
before `opened_at` belong to an earlier life of a reopened incident and are not counted.
Goals count the priority's calendar: under business hours, `3d` means 72 hours of opening
time (over a week of 10-hour days). The resolution clock stops while an incident is on hold
(as ITIL has it: the wait is on somebody else): its deadlines move by the counted time held.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tocsin.model import Incident, IncidentState
from tocsin.records.calendar import ALWAYS, Calendar, parse_business_hours
from tocsin.records.priority import PRIORITIES
from tocsin.rules.schema import Errors, check_keys, expect_map, parse_duration
from tocsin.yamlsrc import Mark, SourceError, did_you_mean, key_mark, value_mark

__all__ = ["MARKS", "SlaPolicy", "SlaTarget", "parse_sla"]

# Every mark check() can return, in the order it breaks ties.
MARKS: tuple[str, ...] = (
    "response:warning",
    "response:breach",
    "resolution:warning",
    "resolution:breach",
)
_STAGES = ("response", "resolution")
_KEYS = ("warn_at", "business_hours", "priorities")
_TARGET_KEYS = ("response", "resolution", "business_hours")
_LONGEST = 365 * 86400.0
_DEFAULT_WARN = 0.75


@dataclass(frozen=True, slots=True)
class SlaTarget:
    """One priority's SLA: counted seconds to respond and to resolve (None: no such goal)."""

    response: float | None
    resolution: float | None
    calendar: Calendar = ALWAYS

    def seconds(self, stage: str) -> float | None:
        """Return the goal of "response" or "resolution"."""
        return self.response if stage == "response" else self.resolution


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """SLA goals by priority; a priority without one has no SLA."""

    priorities: Mapping[str, SlaTarget] = field(default_factory=dict)
    warn_at: float = _DEFAULT_WARN  # the near-breach fraction of each goal
    where: Mark | None = field(default=None, compare=False)

    def check(self, incident: Incident, now: float) -> list[str]:
        """Return the marks crossed by `now` that are not yet in `incident.sla_fired`, in time
        order; it does not change the incident."""
        return [mark for moment, _, mark in self._pending(incident) if moment <= now]

    def next_check(self, incident: Incident) -> float | None:
        """Return the earliest instant at which `check` has something to return, else None.

        It is in the past when a mark is due that nobody has checked yet: check at once.
        """
        pending = self._pending(incident)
        return pending[0][0] if pending else None

    def deadlines(self, incident: Incident) -> dict[str, float]:
        """Return `response_due`, `response_warning`, `resolution_due`, `resolution_warning`
        (those the incident's priority has goals for), for people to see."""
        target = self.priorities.get(incident.priority)
        found: dict[str, float] = {}
        if target is None:
            return found
        for stage in _STAGES:
            seconds = target.seconds(stage)
            if seconds is not None:
                paused = _held(incident, target.calendar) if stage == "resolution" else 0.0
                found[f"{stage}_due"] = target.calendar.add(incident.opened_at, seconds + paused)
                found[f"{stage}_warning"] = target.calendar.add(
                    incident.opened_at, seconds * self.warn_at + paused
                )
        return found

    def _pending(self, incident: Incident) -> list[tuple[float, int, str]]:
        """Return (instant, tie order, mark) of every mark that can still fire, soonest first."""
        target = self.priorities.get(incident.priority)
        if target is None or not incident.is_open:
            return []
        found: list[tuple[float, int, str]] = []
        for stage in _STAGES:
            seconds = target.seconds(stage)
            if seconds is None or _met(incident, stage):
                continue
            paused = 0.0
            if stage == "resolution":
                if incident.held_since is not None:
                    continue  # on hold: the clock stands still until work resumes
                paused = _held(incident, target.calendar)
            for fraction, kind in ((self.warn_at, "warning"), (1.0, "breach")):
                mark = f"{stage}:{kind}"
                if mark not in incident.sla_fired:
                    moment = target.calendar.add(incident.opened_at, seconds * fraction + paused)
                    found.append((moment, MARKS.index(mark), mark))
        return sorted(found)


def _held(incident: Incident, calendar: Calendar) -> float:
    """Counted seconds the incident spent on hold since it was opened (the running hold is
    left to the caller: while it runs, no resolution mark is pending)."""
    return sum(
        calendar.elapsed(max(start, incident.opened_at), end)
        for start, end in incident.holds
        if end > incident.opened_at
    )


def _met(incident: Incident, stage: str) -> bool:
    """Tell whether an open incident has met a stage (responded, or resolved)."""
    if stage == "response" and incident.state != IncidentState.NEW:
        return True  # somebody took it, even where no acknowledged_at was recorded
    times = [incident.resolved_at, incident.closed_at]
    if stage == "response":
        times.append(incident.acknowledged_at)
    return any(t is not None and t >= incident.opened_at for t in times)


# ---------------------------------------------------------------------------------------------
# Parsing from YAML


def parse_sla(spec: Any, where: Mark) -> SlaPolicy:
    """Parse an `sla:` section; empty means no SLA for any priority."""
    if spec is None:
        return SlaPolicy(where=where)
    data = expect_map(spec, where, "'sla'")

    def errors(at: Mark, message: str) -> SourceError:
        return SourceError(at, f"sla: {message}")

    check_keys(data, _KEYS, "option", errors, required=("priorities",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    warn_at = _warn_at(data["warn_at"], at("warn_at"), errors) if "warn_at" in data else None
    default: Calendar | None = None
    if "business_hours" in data:
        default = parse_business_hours(
            data["business_hours"], at("business_hours"), _within("'business_hours'", errors)
        )
    items = expect_map(data["priorities"], at("priorities"), "'priorities'", errors)
    if not items:
        raise errors(at("priorities"), "'priorities' must give at least one priority")
    targets: dict[str, SlaTarget] = {}
    for name, item in items.items():
        if name not in PRIORITIES:
            shown = name if isinstance(name, str) else repr(name)
            raise errors(
                key_mark(items, name, items.mark),
                f"unknown priority '{shown}'{did_you_mean(str(name).upper(), PRIORITIES)} "
                f"(use {', '.join(PRIORITIES)})",
            )
        targets[name] = _target(
            item, value_mark(items, name, items.mark), default, _within(f"priority {name}", errors)
        )
    return SlaPolicy(
        priorities=targets, warn_at=_DEFAULT_WARN if warn_at is None else warn_at, where=where
    )


def _within(what: str, outer: Errors) -> Errors:
    """Prefix errors with the part of the section they are in."""

    def errors(at: Mark, message: str) -> SourceError:
        return outer(at, f"{what}: {message}")

    return errors


def _warn_at(value: Any, where: Mark, errors: Errors) -> float:
    """Read the near-breach fraction: 75% or 0.75, above 0 and below 1."""
    fraction: float | None = None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            fraction = float(value.strip()[:-1]) / 100
        except ValueError:
            fraction = None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        fraction = float(value)
    if fraction is None or not 0 < fraction < 1:
        shown = repr(value)
        raise errors(where, f"'warn_at' must be like 75% or 0.75 (below 100%), not {shown}")
    return fraction


def _target(spec: Any, where: Mark, default: Calendar | None, errors: Errors) -> SlaTarget:
    data = expect_map(spec, where, "an SLA", errors)
    check_keys(data, _TARGET_KEYS, "option", errors)
    if "response" not in data and "resolution" not in data:
        raise errors(where, "give 'response', 'resolution' or both")

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    goals: dict[str, float | None] = {}
    for stage in _STAGES:
        goals[stage] = None
        if stage in data:
            seconds = parse_duration(data[stage], at(stage), f"'{stage}'", errors)
            if not 0 < seconds <= _LONGEST:
                raise errors(at(stage), f"'{stage}' must be more than 0 and at most 365d")
            goals[stage] = seconds
    calendar = ALWAYS if default is None else default
    if "business_hours" in data:
        value = data["business_hours"]
        if value is False:
            calendar = ALWAYS
        elif value is True:
            if default is None:
                raise errors(
                    at("business_hours"),
                    "'business_hours: true' needs 'business_hours' under 'sla' to say which hours",
                )
        else:
            calendar = parse_business_hours(
                value, at("business_hours"), _within("'business_hours'", errors)
            )
    return SlaTarget(response=goals["response"], resolution=goals["resolution"], calendar=calendar)
