"""The normalized event and the record types every other module speaks."""

from __future__ import annotations

import enum
import itertools
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ITIL_OF_LEVEL",
    "LEVELS",
    "OPEN_STATES",
    "RUN_FINISHED",
    "RUN_STATES",
    "Escalation",
    "Event",
    "FileIdentity",
    "FileOffset",
    "Incident",
    "IncidentChange",
    "IncidentState",
    "Outgoing",
    "Put",
    "RemediationRun",
    "RunRequest",
    "Severity",
    "StateRow",
    "level_from_number",
]


class Severity(enum.StrEnum):
    """ITIL event classes: what an operator must do about an event."""

    INFORMATIONAL = "informational"
    WARNING = "warning"
    EXCEPTION = "exception"


# Syslog levels (RFC 5424 section 6.2.1), most severe first: index == numeric level.
LEVELS: tuple[str, ...] = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

ITIL_OF_LEVEL: dict[str, str] = {
    "emerg": Severity.EXCEPTION,
    "alert": Severity.EXCEPTION,
    "crit": Severity.EXCEPTION,
    "err": Severity.EXCEPTION,
    "warning": Severity.WARNING,
    "notice": Severity.INFORMATIONAL,
    "info": Severity.INFORMATIONAL,
    "debug": Severity.INFORMATIONAL,
}


def level_from_number(number: int) -> str:
    """Return the syslog keyword of a numeric level, clamping out-of-range values."""
    return LEVELS[min(max(number, 0), 7)]


# A correlation key's saved state: (rule id, key, JSON or None once the state is gone,
# a number that orders a rule's keys from least to most recently used).
StateRow = tuple[str, str, str | None, int]

_BOOT = f"{os.getpid():x}{int(time.time()):x}"
_SEQUENCE = itertools.count(1)


class Event:
    """One normalized signal; built for every line, so plain slots and no validation."""

    __slots__ = (
        "_id",
        "fields",
        "host",
        "level",
        "message",
        "origin",
        "program",
        "received",
        "severity",
        "source",
        "time",
    )

    def __init__(
        self,
        *,
        time: float,
        received: float,
        source: str,
        origin: str,
        message: str,
        host: str = "",
        program: str = "",
        level: str = "info",
        severity: str | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        self._id: str | None = None
        self.time = time
        self.received = received
        self.source = source
        self.origin = origin
        self.host = host
        self.program = program
        self.level = level
        self.severity = (
            ITIL_OF_LEVEL.get(level, Severity.INFORMATIONAL) if severity is None else severity
        )
        self.message = message
        self.fields: dict[str, Any] = {} if fields is None else fields

    @property
    def id(self) -> str:
        """Return a process-unique id, made only when somebody asks for it."""
        if self._id is None:
            self._id = f"{_BOOT}-{next(_SEQUENCE):x}"
        return self._id

    def to_dict(self) -> dict[str, Any]:
        """Return the event as JSON-able data (correlation state keeps events across restarts)."""
        return {
            "time": self.time,
            "received": self.received,
            "source": self.source,
            "origin": self.origin,
            "host": self.host,
            "program": self.program,
            "level": self.level,
            "severity": self.severity,
            "message": self.message,
            "fields": self.fields,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Event:
        """Rebuild an event from `to_dict` data."""
        return cls(
            time=float(data["time"]),
            received=float(data["received"]),
            source=str(data["source"]),
            origin=str(data["origin"]),
            message=str(data["message"]),
            host=str(data["host"]),
            program=str(data["program"]),
            level=str(data["level"]),
            severity=str(data["severity"]),
            fields=dict(data["fields"]),
        )

    def __repr__(self) -> str:
        return (
            f"Event(source={self.source!r}, host={self.host!r}, program={self.program!r}, "
            f"level={self.level!r}, message={self.message!r}, fields={self.fields!r})"
        )


class IncidentState(enum.StrEnum):
    """Where an incident is in its ITIL lifecycle; resolved and closed are not open."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    RESOLVED = "resolved"
    CLOSED = "closed"


# The states of an incident somebody still has to work on.
OPEN_STATES: frozenset[str] = frozenset(
    {
        IncidentState.NEW,
        IncidentState.ACKNOWLEDGED,
        IncidentState.IN_PROGRESS,
        IncidentState.ON_HOLD,
    }
)


@dataclass(slots=True)
class Escalation:
    """Where an incident is on its escalation policy; kept with the incident across restarts."""

    policy: str
    level: int  # index of the level notified last (-1: none yet)
    next_at: float | None  # when to climb (or repeat) unless acknowledged; None: stopped
    rounds: int = 0  # how many times the last level was repeated
    # [receiver, user name or ""] paged so far: they hear the acknowledge and the resolve
    paged: list[list[str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form the store keeps."""
        return {"policy": self.policy, "level": self.level, "next_at": self.next_at,
                "rounds": self.rounds, "paged": self.paged}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Escalation:
        """Rebuild from `to_dict` data."""
        next_at = data.get("next_at")
        return cls(
            policy=str(data["policy"]),
            level=int(data["level"]),
            next_at=None if next_at is None else float(next_at),
            rounds=int(data.get("rounds", 0)),
            paged=[[str(r), str(u)] for r, u in data.get("paged", ())],
        )


@dataclass(slots=True)
class Incident:
    """An incident as the engine keeps it while it is open."""

    id: int
    fingerprint: str
    rule: str
    key: str
    title: str
    state: IncidentState
    priority: str
    impact: str
    urgency: str
    first_seen: float
    last_seen: float
    count: int = 1
    service: str = ""
    category: str = ""
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    resolved_at: float | None = None
    muted: str = ""  # why its notifications are held right now (silence, maintenance, inhibit)
    opened_at: float = 0.0  # when tocsin opened (or last reopened) it: SLA clocks start here
    acknowledged_at: float | None = None
    closed_at: float | None = None
    assignee: str = ""
    group: str = ""  # the assignment group
    workaround: str = ""
    reopened: int = 0  # times it was reopened
    samples: list[dict[str, Any]] = field(default_factory=list)  # events behind it, bounded
    sla_fired: list[str] = field(default_factory=list)  # "response:warning", "resolution:breach"
    escalation: Escalation | None = None
    holds: list[list[float]] = field(default_factory=list)  # [start, end] of past holds
    held_since: float | None = None  # on hold since then: the resolution clock is paused

    @property
    def is_open(self) -> bool:
        """Whether somebody still has to work on it (not resolved or closed)."""
        return self.state in OPEN_STATES


@dataclass(slots=True)
class IncidentChange:
    """What happened to one incident; `incident` is live, so `count` keeps the value then."""

    # "open" | "update" (more occurrences) | "resolve" | "mute" (its `muted` reason changed),
    # and from operators and timers: "acknowledge" | "start" | "hold" | "assign" | "comment"
    # | "rate" | "close" | "reopen" | "escalate" | "sla" | "notify" (a send failed or was held)
    op: str
    incident: Incident
    time: float
    count: int
    actor: str
    previous: str | None = None  # the state before a state change
    note: str = ""  # for the timeline: what changed, when it is not the state
    state: str | None = None  # the state right after it (`incident` may have moved on since)


# Where a remediation run is: waiting its turn or an approval, running, or finished.
RUN_STATES = (
    "queued",
    "awaiting_approval",
    "running",
    "succeeded",
    "failed",
    "dry_run",
    "refused",
    "rejected",
    "expired",
    "interrupted",
)
RUN_FINISHED = frozenset(RUN_STATES[3:])


@dataclass(frozen=True, slots=True)
class RunRequest:
    """A rule's `remediate` action asking for a run: rendered now, numbered at commit."""

    runbook: str
    rule: str
    key: str
    target: str
    fingerprint: str  # the incident it works on: rule id and key (may not exist)
    spec: dict[str, Any]  # the rendered run
    time: float  # event time of the hit
    dry_run: bool = False  # the rule asked for a dry run
    on_success: str = ""
    on_failure: str = ""


@dataclass(slots=True)
class RemediationRun:
    """One run of a runbook for a rule's hit: rendered at commit, run by the remediator."""

    id: int
    runbook: str
    rule: str
    key: str
    target: str  # what the circuit breaker counts failures for (default: the key)
    incident_id: int | None
    state: str  # one of RUN_STATES
    created_at: float
    spec: dict[str, Any]  # the rendered run (runbooks.render.RenderedRun.to_dict)
    reason: str = ""  # why it is in its state, for people
    started_at: float | None = None
    finished_at: float | None = None
    dry_run: bool = False
    on_success: str = ""  # "", "resolve", or "wait_clear:SECONDS"
    on_failure: str = ""  # "", "escalate", or "priority:IMPACT/URGENCY"
    result: dict[str, Any] | None = None  # runbooks.execute.RunResult.to_dict
    approval_expires: float | None = None
    decided_by: str = ""  # who approved or rejected it

    def data(self) -> dict[str, Any]:
        """Return the JSON the store keeps beside the columns."""
        return {
            "spec": self.spec,
            "dry_run": self.dry_run,
            "on_success": self.on_success,
            "on_failure": self.on_failure,
            "result": self.result,
            "approval_expires": self.approval_expires,
            "decided_by": self.decided_by,
        }


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file this is: device+inode, plus a hash of its first bytes against inode reuse."""

    dev: int
    ino: int
    fp_len: int  # how many leading bytes the fingerprint covers (grows up to a cap)
    fp_hash: str  # hex digest of those bytes


@dataclass(frozen=True, slots=True)
class FileOffset:
    """A durable read position: every line before `offset` has been fully processed."""

    path: str
    identity: FileIdentity
    offset: int


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message an action wants delivered; kept in the store's outbox until it is sent.

    `channel` names where it goes ("mqtt:BROKER"); `body` is JSON-able and means whatever
    that channel's sender makes of it (for MQTT: topic, payload, qos, retain).
    """

    channel: str
    rule: str
    body: dict[str, Any]


# How a source queues events: (events, when received, source name, and a callback for once
# everything they changed is committed: then MQTT messages and SNMP informs are answered).
# It returns once the events are in the pipeline, which is the backpressure.
Put = Callable[[list[Event], float, str, Callable[[], None] | None], Awaitable[None]]
