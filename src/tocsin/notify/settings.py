"""The incidents file (`incidents:` in tocsin.yaml): lifecycle, SLA, people, on-call,
receivers, escalation and routing, validated together so every reference resolves.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tocsin.notify.escalation import EscalationPolicy, parse_escalation_policies
from tocsin.notify.receivers import Receiver, parse_receivers
from tocsin.notify.routing import Route, parse_route
from tocsin.notify.users import User, parse_users
from tocsin.oncall.schedule import OnCallSchedule, parse_oncall
from tocsin.records.incidents import REOPEN_WINDOW
from tocsin.records.known_errors import KnownError, parse_known_errors
from tocsin.records.problems import RecurrenceRule, parse_problems
from tocsin.records.sla import SlaPolicy, parse_sla
from tocsin.rules.schema import check_keys, expect_int, expect_map, parse_duration
from tocsin.yamlsrc import Mark, SourceError, load_yaml_file, value_mark

__all__ = ["IncidentSettings", "load_incident_settings"]

_KEYS = (
    "lifecycle",
    "sla",
    "users",
    "oncall",
    "receivers",
    "escalation_policies",
    "route",
    "problems",
    "known_errors",
)
_LIFECYCLE_KEYS = ("reopen_window", "auto_close", "samples")


@dataclass(frozen=True, slots=True)
class IncidentSettings:
    """How incidents live and who hears about them; the defaults notify nobody."""

    reopen_window: float = REOPEN_WINDOW  # a recurrence this soon after resolution reopens it
    auto_close: float | None = None  # close resolved incidents after this long; None: never
    samples: int = 10  # events kept on an incident (the first half, then the newest)
    sla: SlaPolicy | None = None
    users: Mapping[str, User] = field(default_factory=dict)
    schedules: Mapping[str, OnCallSchedule] = field(default_factory=dict)
    receivers: Mapping[str, Receiver] = field(default_factory=dict)
    policies: Mapping[str, EscalationPolicy] = field(default_factory=dict)
    route: Route | None = None
    recurrence: tuple[RecurrenceRule, ...] = ()  # problems.recurrence
    known_errors: tuple[KnownError, ...] = ()


def load_incident_settings(path: Path, *, brokers: Collection[str]) -> IncidentSettings:
    """Read the incidents file; raise SourceError at file:line of the first problem."""
    data = load_yaml_file(path)
    root = expect_map(data, Mark(str(path), 1, 1), "the incidents file")
    check_keys(root, _KEYS, "incidents file key")

    def at(key: str) -> Mark:
        return value_mark(root, key, root.mark)

    reopen_window, auto_close, samples = _lifecycle(root.get("lifecycle"), at("lifecycle"))
    receivers = parse_receivers(
        root.get("receivers"), at("receivers"), base=path.resolve().parent, brokers=brokers
    )
    users = parse_users(root.get("users"), at("users"), receivers=receivers)
    schedules = parse_oncall(root.get("oncall"), at("oncall"))
    policies = parse_escalation_policies(
        root.get("escalation_policies"),
        at("escalation_policies"),
        receivers=receivers,
        schedules=schedules,
        users=users,
    )
    route = None
    if root.get("route") is not None:
        route = parse_route(root["route"], at("route"), receivers=receivers, policies=policies)
    elif policies:
        raise SourceError(
            at("escalation_policies"),
            "escalation policies page nobody without a 'route' that names them",
        )
    sla = parse_sla(root["sla"], at("sla")) if root.get("sla") is not None else None
    recurrence = parse_problems(root.get("problems"), at("problems"))
    known_errors = parse_known_errors(root.get("known_errors"), at("known_errors"))
    return IncidentSettings(
        reopen_window=reopen_window,
        auto_close=auto_close,
        samples=samples,
        sla=sla,
        users=users,
        schedules=schedules,
        receivers=receivers,
        policies=policies,
        route=route,
        recurrence=recurrence,
        known_errors=tuple(known_errors),
    )


def _lifecycle(spec: Any, where: Mark) -> tuple[float, float | None, int]:
    """Parse `lifecycle:` (reopen_window, auto_close, samples)."""
    data = expect_map(spec, where, "'lifecycle'")
    check_keys(data, _LIFECYCLE_KEYS, "lifecycle option")
    defaults = IncidentSettings()
    reopen = parse_duration(
        data.get("reopen_window", defaults.reopen_window),
        value_mark(data, "reopen_window", where),
        "'reopen_window'",
    )
    auto_close: float | None = None
    raw = data.get("auto_close")
    if raw not in (None, False, "off"):
        auto_close = parse_duration(raw, value_mark(data, "auto_close", where), "'auto_close'")
        if auto_close <= 0:
            raise SourceError(
                value_mark(data, "auto_close", where), "'auto_close' must be positive, or off"
            )
    samples = expect_int(
        data.get("samples", defaults.samples), value_mark(data, "samples", where), "'samples'"
    )
    if not 0 <= samples <= 1000:
        raise SourceError(value_mark(data, "samples", where), "'samples' must be 0..1000")
    return reopen, auto_close, samples
