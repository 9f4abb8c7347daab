"""The one interface every store backend implements (SQLite now, PostgreSQL later)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from tocsin.model import (
    FileOffset,
    Incident,
    IncidentChange,
    Outgoing,
    RemediationRun,
    StateRow,
)

__all__ = ["CommitBatch", "CorrelationSnapshot", "HistoryEntry", "Store", "StoreError"]


class StoreError(Exception):
    """The store could not do what was asked; `reason` says why in a sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One entry on an incident's timeline: a state change, comment, notification, ..."""

    incident_id: int
    time: float
    from_state: str | None
    to_state: str
    actor: str
    note: str = ""
    kind: str = "state"  # the IncidentChange op that made it ("state" for plain transitions)


def _snapshot(incident: Incident) -> Incident:
    """Copy an incident down to the parts the loop keeps changing while the writer thread
    serializes the copy (labels, samples, SLA marks, escalation)."""
    escalation = incident.escalation
    return replace(
        incident,
        labels=dict(incident.labels),
        samples=list(incident.samples),
        sla_fired=list(incident.sla_fired),
        holds=[list(h) for h in incident.holds],
        escalation=None
        if escalation is None
        else replace(escalation, paged=[list(p) for p in escalation.paged]),
    )


# Changes whose timeline entry is a plain state transition.
_TRANSITIONS = frozenset({"open", "resolve", "acknowledge", "start", "hold", "close"})


@dataclass(slots=True)
class CommitBatch:
    """Everything one or more engine batches changed; committed in one transaction."""

    incidents: list[Incident] = field(default_factory=list)  # snapshots, upserted by id
    history: list[HistoryEntry] = field(default_factory=list)
    offsets: list[FileOffset] = field(default_factory=list)  # upserted by path
    state: list[StateRow] = field(default_factory=list)  # upserted or deleted by (rule, key)
    watermark: float | None = None
    digests: dict[str, str] | None = None  # replaces every rule's saved digest
    forget: list[str] = field(default_factory=list)  # rules whose saved state goes first
    outbox: list[Outgoing] = field(default_factory=list)  # messages to send, in order
    groups: dict[str, str | None] = field(default_factory=dict)  # notify group heads: JSON or
    # delete (with its members); then their members by (group, incident id): JSON or delete
    members: dict[tuple[str, int], str | None] = field(default_factory=dict)
    delivered: list[int] = field(default_factory=list)  # outbox rows sent: delete them
    runs: list[RemediationRun] = field(default_factory=list)  # snapshots, upserted by id
    problems: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (state, JSON)
    problem_history: list[HistoryEntry] = field(default_factory=list)  # incident_id: problem
    known_errors: dict[str, str | None] = field(default_factory=dict)  # API-made: JSON or delete
    documents: dict[str, str] = field(default_factory=dict)  # named state documents (JSON)
    requests: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (state, JSON)
    request_history: list[HistoryEntry] = field(default_factory=list)  # incident_id: request
    grants: dict[int, tuple[str, str, str, str]] = field(default_factory=dict)
    # id -> (state, role, subject, JSON)
    audit: list[tuple[float, str, str, str, str]] = field(default_factory=list)
    # (time, action, role, subject, JSON)

    @classmethod
    def of(
        cls,
        changes: Sequence[IncidentChange],
        offsets: list[FileOffset],
        *,
        state: list[StateRow] | None = None,
        watermark: float | None = None,
        outbox: list[Outgoing] | None = None,
    ) -> CommitBatch:
        """Snapshot what changes touched, so later changes cannot alter what gets committed."""
        touched: dict[int, Incident] = {}
        history: list[HistoryEntry] = []
        for change in changes:
            incident = change.incident
            touched[incident.id] = incident
            op = change.op
            if op == "update":
                continue  # one more occurrence: the count says it, not the timeline
            after = change.state or str(incident.state)
            before = None if op == "open" else (change.previous or after)
            kind = "state" if op in _TRANSITIONS else op
            history.append(
                HistoryEntry(
                    incident.id, change.time, before, after, change.actor, change.note, kind
                )
            )
        return cls(
            incidents=[_snapshot(i) for i in touched.values()],
            history=history,
            offsets=offsets,
            state=state or [],
            watermark=watermark,
            outbox=outbox or [],
        )

    def __bool__(self) -> bool:
        return bool(
            self.incidents
            or self.history
            or self.offsets
            or self.state
            or self.digests is not None
            or self.forget
            or self.watermark is not None
            or self.outbox
            or self.groups
            or self.members
            or self.delivered
            or self.runs
            or self.problems
            or self.problem_history
            or self.known_errors
            or self.documents
            or self.requests
            or self.request_history
            or self.grants
            or self.audit
        )

    def extend(self, other: CommitBatch) -> None:
        """Fold a later batch into this one (later snapshots, offsets and state win)."""
        self.incidents.extend(other.incidents)
        self.history.extend(other.history)
        self.offsets.extend(other.offsets)
        self.outbox.extend(other.outbox)
        self.groups.update(other.groups)
        self.members.update(other.members)
        self.delivered.extend(other.delivered)
        self.runs.extend(other.runs)
        self.problems.update(other.problems)
        self.problem_history.extend(other.problem_history)
        self.known_errors.update(other.known_errors)
        self.documents.update(other.documents)
        self.requests.update(other.requests)
        self.request_history.extend(other.request_history)
        self.grants.update(other.grants)
        self.audit.extend(other.audit)
        if other.forget:
            gone = set(other.forget)
            self.state = [row for row in self.state if row[0] not in gone]
            self.forget.extend(other.forget)
        if other.digests is not None:
            self.digests = other.digests
        self.state.extend(other.state)
        if other.watermark is not None:
            self.watermark = other.watermark


@dataclass(slots=True)
class CorrelationSnapshot:
    """Saved correlation state: which definition each rule had, its keys, and event time."""

    digests: dict[str, str] = field(default_factory=dict)
    # rule -> [(key, JSON)], least recently used first
    rows: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    watermark: float | None = None
    seq: int = 0  # the newest row's number


class Store(Protocol):
    """Durable state; synchronous, each instance used from one thread at a time."""

    def open(self) -> None:
        """Connect and apply pending schema migrations."""

    def close(self) -> None:
        """Release the connection; safe to call twice."""

    def commit(self, batch: CommitBatch) -> None:
        """Persist the whole batch in one transaction, or nothing and raise StoreError."""

    def load_open_incidents(self) -> list[Incident]:
        """Return every open incident (not resolved or closed), for the engine to resume with."""

    def load_watermark(self) -> float | None:
        """Return the saved event-time watermark, or None before the first commit of one."""

    def load_resolved_since(self, since: float) -> list[Incident]:
        """Return the incidents resolved (not closed) at or after `since` (reopen candidates)."""

    def resolved_before(self, before: float, limit: int) -> list[Incident]:
        """Return up to `limit` incidents resolved before `before` and not closed (auto-close)."""

    def load_groups(self) -> dict[str, tuple[str, dict[int, str]]]:
        """Return every saved notification group by id: its head and its members by incident."""

    def next_incident_id(self) -> int:
        """Return one more than the largest incident id ever stored (1 when empty)."""

    def load_offsets(self) -> dict[str, FileOffset]:
        """Return the last committed read position of every tailed path."""

    def load_correlation(self) -> CorrelationSnapshot:
        """Return the committed correlation state."""

    def save_silence(self, silence_id: str, ends_at: float, data: str) -> None:
        """Insert or replace one silence (JSON) in its own durable transaction."""

    def load_silences(self) -> list[str]:
        """Return every silence ever saved, as JSON."""

    def save_window(self, name: str, data: str) -> None:
        """Insert or replace one API-made maintenance window (JSON), durably."""

    def load_windows(self) -> list[str]:
        """Return every API-made maintenance window, as JSON."""

    def list_incidents(
        self,
        *,
        states: Sequence[str] | None = None,
        priorities: Sequence[str] | None = None,
        service: str | None = None,
        assignee: str | None = None,
        group: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Incident]:
        """Return incidents, newest first, filtered by whichever filters are given."""

    def get_incident(self, incident_id: int) -> Incident | None:
        """Return one incident, or None."""

    def incident_history(self, incident_id: int) -> list[HistoryEntry]:
        """Return an incident's timeline entries, oldest first."""

    def load_runs(self, states: Sequence[str]) -> list[RemediationRun]:
        """Return the runs in any of `states`, oldest first (to resume after a restart)."""

    def recent_admissions(self, since: float) -> list[tuple[str, str, str, float]]:
        """Return (runbook, rule, key, time) of the runs the rate limit counted at or after
        `since`, oldest first (to rebuild its windows after a restart)."""

    def last_run(self, rule: str, key: str) -> RemediationRun | None:
        """Return the newest run a rule asked for with this key (the service desk's), or None."""

    def next_run_id(self) -> int:
        """Return one more than the largest run id ever stored (1 when empty)."""

    def list_runs(
        self, *, states: Sequence[str] | None = None, limit: int = 100, offset: int = 0
    ) -> list[RemediationRun]:
        """Return runs, newest first, optionally only those in `states`."""

    def get_run(self, run_id: int) -> RemediationRun | None:
        """Return one run, or None."""

    def problem_history(self, problem_id: int) -> list[HistoryEntry]:
        """Return a problem's timeline, oldest first (incident_id holds the problem id)."""

    def load_records(self, table: str, states: Sequence[str] | None = None) -> list[str]:
        """Return the JSON of every row of `table` (problems, service_requests or
        access_grants), oldest first, optionally only those in `states`."""

    def list_records(
        self,
        table: str,
        *,
        states: Sequence[str] | None = None,
        subject: str | None = None,
        role: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[str]:
        """Return rows of `table` (JSON), newest first; subject/role only for access_grants."""

    def get_record(self, table: str, record_id: int) -> str | None:
        """Return one row of `table` (JSON), or None."""

    def next_record_id(self, table: str) -> int:
        """Return one more than the largest id of `table` (1 when empty)."""

    def request_history(self, request_id: int) -> list[HistoryEntry]:
        """Return a service request's timeline, oldest first."""

    def list_audit(
        self,
        *,
        subject: str | None = None,
        role: str | None = None,
        action: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[str]:
        """Return access audit entries (JSON), newest first, filtered."""

    def load_known_errors(self) -> list[str]:
        """Return every API-made known error (JSON)."""

    def load_documents(self) -> dict[str, str]:
        """Return every named state document (JSON) by name."""

    def load_outbox(self, channel: str, after: int, limit: int) -> list[tuple[int, Outgoing]]:
        """Return up to `limit` of a channel's unsent messages with id > `after`, in id order."""

    def delete_outbox(self, ids: Sequence[int]) -> None:
        """Delete delivered messages in their own durable transaction."""

    def count_outbox(self) -> dict[str, int]:
        """Return how many messages wait, per channel (channels with none are left out)."""
