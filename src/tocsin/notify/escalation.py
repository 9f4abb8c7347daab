"""Escalation policies: page level after level until somebody acknowledges (PagerDuty-style).

Pure: the caller passes `now`, keeps `incident.escalation` (the policy, the level paged last,
when to climb next), sets a timer at its `next_at`, and turns the targets of each Step into
notices. Levels are paged in order, each after the previous one's `delay` passes without an
acknowledgement; the last level is paged again `repeat` more times, each after its delay.
On-call schedules are asked who is on call when a level is paged, so a handoff between
levels pages the new person.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from tocsin.model import Escalation, Incident, IncidentState
from tocsin.notify.users import User
from tocsin.oncall.schedule import OnCallSchedule
from tocsin.rules.schema import (
    Errors,
    check_keys,
    expect_int,
    expect_list,
    expect_map,
    expect_str,
    parse_duration,
    parse_named,
)
from tocsin.yamlsrc import Mark, SourceError, did_you_mean, value_mark

__all__ = [
    "KINDS",
    "ON_SLA_WARNING",
    "EscalationPolicy",
    "Escalator",
    "Level",
    "Reference",
    "Step",
    "Target",
    "parse_escalation_policies",
]

KINDS = ("receiver", "user", "schedule")  # what a level can page
ON_SLA_WARNING = ("ignore", "climb")
_POLICY_KEYS = ("name", "levels", "repeat", "on_sla_warning")
_LEVEL_KEYS = ("targets", "delay")
# How errors name each kind of target, and the section that defines them.
_SECTIONS = {
    "receiver": ("receiver", "receivers"),
    "user": ("user", "users"),
    "schedule": ("on-call schedule", "oncall"),
}


@dataclass(frozen=True, slots=True)
class Reference:
    """One target as configured: a receiver, a user, or whoever a schedule has on call."""

    kind: str  # one of KINDS
    name: str

    @property
    def via(self) -> str:
        """Say how a page came about, for people: "schedule primary"."""
        return f"{self.kind} {self.name}"


@dataclass(frozen=True, slots=True)
class Level:
    """Who to page together, and how long to wait for an acknowledgement before going on."""

    targets: tuple[Reference, ...]
    delay: float | None  # seconds; None only on a last level that is not repeated


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """Levels paged in order; `repeat` more rounds of the last; climb on an SLA warning or not."""

    name: str
    levels: tuple[Level, ...]
    repeat: int = 0
    on_sla_warning: str = "ignore"  # one of ON_SLA_WARNING
    where: Mark | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.levels:
            raise ValueError("an escalation policy needs at least one level")
        waits = self.levels if self.repeat else self.levels[:-1]
        if any(level.delay is None or level.delay <= 0 for level in waits):
            raise ValueError("every level that is followed by another page needs a delay")

    def next_at(self, level: int, rounds: int, now: float) -> float | None:
        """Return when to page again after level `level` (round `rounds`) was paged at `now`."""
        last = len(self.levels) - 1
        if level < last or rounds < self.repeat:
            delay = self.levels[min(level, last)].delay
            assert delay is not None  # checked in __post_init__
            return now + delay
        return None


@dataclass(frozen=True, slots=True)
class Target:
    """Page `receiver`, on behalf of `user` when a person is meant."""

    receiver: str
    user: User | None
    level: int  # index into the policy's levels (0 is the first), as in Escalation.level
    via: str  # "schedule primary", "user bob", "receiver ops-slack"


@dataclass(frozen=True, slots=True)
class Step:
    """What one escalation step pages, and what went wrong on the way (for the timeline)."""

    targets: tuple[Target, ...] = ()
    notes: tuple[str, ...] = ()  # "schedule 'primary' has nobody on call"
    reason: str = ""  # for Notice.reason: "escalation level 2 (repeat 1)"; "" when nothing paged


class Escalator:
    """Moves incidents along the configured policies; rebuilt on reload, state stays on them."""

    __slots__ = ("policies", "schedules", "users")

    def __init__(
        self,
        *,
        policies: Mapping[str, EscalationPolicy],
        schedules: Mapping[str, OnCallSchedule],
        users: Mapping[str, User],
    ) -> None:
        self.policies = policies
        self.schedules = schedules
        self.users = users

    def start(self, incident: Incident, policy: str, now: float) -> Step:
        """Page the first level and set `incident.escalation` (an unknown policy: a note only)."""
        found = self.policies.get(policy)
        if found is None:
            return Step(notes=(f"escalation policy '{policy}' is not configured",))
        incident.escalation = Escalation(
            policy=policy, level=0, next_at=found.next_at(0, 0, now), rounds=0
        )
        return self._page(found, 0, now, "escalation level 1")

    def due(self, incident: Incident, now: float) -> Step:
        """Climb one level (or page the last again) if `next_at` has come and nobody acked.

        After a long pause (`now` several delays past `next_at`) it still climbs only one
        level, and the next climb is a full delay after `now`: people get time to answer.
        An acknowledged, resolved or closed incident stops escalating, as does one whose
        policy a reload removed (with a note).
        """
        escalation = incident.escalation
        if escalation is None or escalation.next_at is None:
            return Step()
        if incident.state != IncidentState.NEW:
            escalation.next_at = None
            return Step()
        if escalation.next_at > now:
            return Step()
        policy = self.policies.get(escalation.policy)
        if policy is None:
            escalation.next_at = None
            return Step(notes=(f"escalation policy '{escalation.policy}' was removed: stopped",))
        last = len(policy.levels) - 1
        if escalation.level < last:
            escalation.level += 1
            reason = f"escalation level {escalation.level + 1}"
        elif escalation.rounds < policy.repeat:
            escalation.level = last  # a reload may have removed levels
            escalation.rounds += 1
            reason = f"escalation level {last + 1} (repeat {escalation.rounds})"
        else:
            escalation.next_at = None  # a reload took away levels or repeats
            return Step()
        escalation.next_at = policy.next_at(escalation.level, escalation.rounds, now)
        step = self._page(policy, escalation.level, now, reason)
        if escalation.next_at is None:
            ended = f"escalation policy '{policy.name}' has no more levels or repeats"
            return Step(targets=step.targets, notes=(*step.notes, ended), reason=reason)
        return step

    def climb(self, incident: Incident, now: float, *, why: str = "SLA warning") -> Step:
        """Climb one level at once: on an SLA near-breach if the policy says `climb`, or
        always for another `why` (a remediation that did not fix it).

        An unacknowledged incident's next climb is then a full delay after `now`; an
        acknowledged one pages the next level but stays stopped. At the last level it pages
        that level again without using up a repeat.
        """
        escalation = incident.escalation
        if escalation is None or not incident.is_open:
            return Step()
        policy = self.policies.get(escalation.policy)
        if policy is None or (why == "SLA warning" and policy.on_sla_warning != "climb"):
            return Step()
        escalation.level = min(escalation.level + 1, len(policy.levels) - 1)
        if escalation.next_at is not None:
            escalation.next_at = policy.next_at(escalation.level, escalation.rounds, now)
        return self._page(
            policy, escalation.level, now, f"escalation level {escalation.level + 1} ({why})"
        )

    def stop(self, incident: Incident) -> None:
        """Page nobody more for this incident (its level stays, for the record)."""
        if incident.escalation is not None:
            incident.escalation.next_at = None

    def _page(self, policy: EscalationPolicy, index: int, now: float, reason: str) -> Step:
        """Resolve a level's references into targets at `now`; one page per receiver and user."""
        targets: list[Target] = []
        notes: list[str] = []
        seen: set[tuple[str, str | None]] = set()

        def add(receiver: str, user: User | None, via: str) -> None:
            key = (receiver, None if user is None else user.name)
            if key not in seen:
                seen.add(key)
                targets.append(Target(receiver=receiver, user=user, level=index, via=via))

        for ref in policy.levels[index].targets:
            name = ref.name
            if ref.kind == "receiver":
                add(name, None, ref.via)
                continue
            if ref.kind == "schedule":
                schedule = self.schedules.get(name)
                if schedule is None:
                    notes.append(f"on-call schedule '{name}' is not configured")
                    continue
                who = schedule.who(now)
                if who is None:
                    notes.append(f"schedule '{name}' has nobody on call")
                    continue
                name = who
            user = self.users.get(name)
            if user is None or not user.receivers:
                notes.append(
                    f"{ref.via}: user '{name}' cannot be reached (no such user or receivers)"
                )
                continue
            for receiver in user.receivers:
                add(receiver, user, ref.via)
        if not targets:
            notes.append(f"{reason} of policy '{policy.name}' paged nobody")
        return Step(targets=tuple(targets), notes=tuple(notes), reason=reason)


# ---------------------------------------------------------------------------------------------
# Parsing from YAML


def parse_escalation_policies(
    spec: Any,
    where: Mark,
    *,
    receivers: Collection[str],
    schedules: Mapping[str, OnCallSchedule],
    users: Mapping[str, User],
) -> dict[str, EscalationPolicy]:
    """Parse an `escalation_policies:` section (a list) into policies by name; empty: none."""
    if spec is None:
        return {}
    known = _Known(receivers=receivers, schedules=schedules, users=users)

    def one(item: Any, at: Mark, number: int) -> EscalationPolicy:
        return _policy(item, at, number, known)

    found = parse_named(spec, where, "'escalation_policies'", "escalation policy", one)
    return {p.name: p for p in found}


@dataclass(frozen=True, slots=True)
class _Known:
    """What targets may name."""

    receivers: Collection[str]
    schedules: Mapping[str, OnCallSchedule]
    users: Mapping[str, User]


def _within(what: str, outer: Errors) -> Errors:
    """Prefix errors with the part of the policy they are in."""

    def errors(at: Mark, message: str) -> SourceError:
        return outer(at, f"{what}: {message}")

    return errors


def _policy(spec: Any, where: Mark, number: int, known: _Known) -> EscalationPolicy:
    data = expect_map(spec, where, "an escalation policy")
    raw = data.get("name")
    label = f"'{raw.strip()}'" if isinstance(raw, str) and raw.strip() else str(number)

    def errors(at: Mark, message: str) -> SourceError:
        return SourceError(at, f"escalation policy {label}: {message}")

    check_keys(data, _POLICY_KEYS, "option", errors, required=("name", "levels"))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    name = expect_str(data["name"], at("name"), "'name'", errors).strip()
    if not name:
        raise errors(at("name"), "'name' must not be empty")
    repeat = expect_int(data.get("repeat", 0), at("repeat"), "'repeat'", errors)
    on_sla_warning = "ignore"
    if "on_sla_warning" in data:
        on_sla_warning = expect_str(
            data["on_sla_warning"], at("on_sla_warning"), "'on_sla_warning'", errors
        ).strip()
        if on_sla_warning not in ON_SLA_WARNING:
            raise errors(
                at("on_sla_warning"),
                f"'on_sla_warning' must be climb or ignore, not '{on_sla_warning}'"
                f"{did_you_mean(on_sla_warning, ON_SLA_WARNING)}",
            )
    items = expect_list(data["levels"], at("levels"), "'levels'", errors)
    if not items:
        raise errors(at("levels"), "'levels' needs at least one level")
    levels = tuple(
        _level(
            item,
            value_mark(items, i, at("levels")),
            waits=i < len(items) - 1 or repeat > 0,
            repeat=repeat if i == len(items) - 1 else 0,
            known=known,
            errors=_within(f"level {i + 1}", errors),
        )
        for i, item in enumerate(items)
    )
    return EscalationPolicy(
        name=name, levels=levels, repeat=repeat, on_sla_warning=on_sla_warning, where=where
    )


def _level(
    spec: Any, where: Mark, *, waits: bool, repeat: int, known: _Known, errors: Errors
) -> Level:
    data = expect_map(spec, where, "a level", errors)
    check_keys(data, _LEVEL_KEYS, "level option", errors, required=("targets",))

    def at(key: str) -> Mark:
        return value_mark(data, key, where)

    delay: float | None = None
    if "delay" in data:
        delay = parse_duration(data["delay"], at("delay"), "'delay'", errors)
        if delay <= 0:
            raise errors(at("delay"), "'delay' must be more than 0")
    elif waits:
        why = (
            f"how long before it is paged again, as 'repeat' is {repeat}"
            if repeat
            else "how long to wait for an acknowledgement before the next level"
        )
        raise errors(data.mark, f"missing required key 'delay' ({why})")
    items = expect_list(data["targets"], at("targets"), "'targets'", errors)
    if not items:
        raise errors(at("targets"), "'targets' needs at least one target")
    targets: list[Reference] = []
    for i, item in enumerate(items):
        ref = _reference(item, value_mark(items, i, at("targets")), known, errors)
        if ref in targets:
            raise errors(value_mark(items, i, at("targets")), f"{ref.via} is listed twice")
        targets.append(ref)
    return Level(targets=tuple(targets), delay=delay)


def _reference(spec: Any, where: Mark, known: _Known, errors: Errors) -> Reference:
    data = expect_map(spec, where, "a target", errors)
    check_keys(data, KINDS, "target kind", errors)
    if len(data) != 1:
        raise errors(where, "a target names one of receiver, user or schedule, like {user: bob}")
    kind = next(iter(data))
    at = value_mark(data, kind, where)
    name = expect_str(data[kind], at, f"'{kind}'", errors).strip()
    names: Collection[str] = {"receiver": known.receivers, "user": known.users}.get(
        kind, known.schedules
    )
    if name not in names:
        what, section = _SECTIONS[kind]
        raise errors(
            at,
            f"unknown {what} '{name}'{did_you_mean(name, names)} "
            f"({what}s are defined under '{section}')",
        )
    if kind == "user":
        _check_reachable(known.users[name], at, f"user '{name}'", errors)
    elif kind == "schedule":
        _check_members(name, known.schedules[name], at, known.users, errors)
    return Reference(kind=kind, name=name)


def _check_reachable(user: User, where: Mark, who: str, errors: Errors) -> None:
    if not user.receivers:
        raise errors(where, f"{who} has no 'receivers', so escalation could not reach them")


def _check_members(
    name: str, schedule: OnCallSchedule, where: Mark, users: Mapping[str, User], errors: Errors
) -> None:
    """Check that everybody the schedule can put on call is a user who can be paged."""
    members = [m for rotation in schedule.rotations for m in rotation.members]
    members += [override.who for override in schedule.overrides]
    for member in dict.fromkeys(members):
        user = users.get(member)
        if user is None:
            raise errors(
                where,
                f"schedule '{name}' puts '{member}' on call, who is not under 'users'"
                f"{did_you_mean(member, users)}: escalation could not reach them",
            )
        who = f"schedule '{name}' puts '{member}' on call, who"
        _check_reachable(user, where, who, errors)
