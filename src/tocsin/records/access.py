"""Access grants: request -> policy decision -> (approval) -> provisioning -> active -> revoke,
with an audit entry for every decision. Pure bookkeeping like records.problems: every call
takes the time, returns what changed, the audit entries to store and the runbooks to run; the
caller runs them and reports back with `provisioned` or `revoked`.

A grant's clock starts when it is approved (by a person, or by the policy when it needs no
approval): it expires at that time plus its duration, at `expires_at` exactly. A request
waits for approval until `approve_by`. A role and subject have at most one current grant:
asking again while one is pending, active or being removed is denied (extend by revoking and
asking again). When the grant runbook fails, the revoke runbook runs to undo any part of it
applied, and the grant ends as failed. When a revoke runbook fails the grant ends as failed
too, and the audit entry says the right may still be held. Grants that end leave the book
(the caller keeps them from the outcome); after a restart, `resume` runs again what was
running, so provisioning runbooks must be safe to run twice.

Audit entries per path: a grant request is `requested` (by the asker), then `approved` or
`denied` by "policy", or nothing more while it waits; an approval is `approved` by the person,
a rejection `denied`, and an approval or rejection by someone the policy does not allow is a
`denied` entry by them with the grant unchanged. The grant runbook's success is `granted`, its
failure `failed`; the clock's end is `expired` (by "expiry"); the revoke runbook's success is
`revoked` (by whoever ended it), its failure `failed`. A revoke request is `requested`, then
`denied` when there is nothing to revoke.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from tocsin.records.access_policy import (
    ALL_ROLES,
    AccessPolicy,
    AccessRequest,
    Decision,
    Verdict,
)
from tocsin.rules.schema import format_duration
from tocsin.tokens import Role

__all__ = [
    "EXPIRY",
    "FINAL_STATES",
    "POLICY",
    "AccessBook",
    "AccessError",
    "AccessOutcome",
    "AuditAction",
    "AuditEntry",
    "AuditQuery",
    "Grant",
    "GrantState",
    "ProvisionRun",
]

# Who the audit log names when the policy, or the clock, decided.
POLICY = "policy"
EXPIRY = "expiry"


class GrantState(enum.StrEnum):
    """Where a grant is; the last four are final (the grant has left the book)."""

    PENDING_APPROVAL = "pending_approval"
    PROVISIONING = "provisioning"  # the grant runbook is running
    ACTIVE = "active"
    REVOKING = "revoking"  # the revoke runbook is running
    REVOKED = "revoked"
    EXPIRED = "expired"  # its time ran out (or its approval did not come in time)
    DENIED = "denied"  # an approver rejected it (or the policy changed before approval)
    FAILED = "failed"  # a runbook failed


_PENDING, _PROVISIONING, _ACTIVE, _REVOKING = (
    GrantState.PENDING_APPROVAL,
    GrantState.PROVISIONING,
    GrantState.ACTIVE,
    GrantState.REVOKING,
)
FINAL_STATES: frozenset[GrantState] = frozenset(
    {GrantState.REVOKED, GrantState.EXPIRED, GrantState.DENIED, GrantState.FAILED}
)


class AuditAction(enum.StrEnum):
    """What an audit entry records."""

    REQUESTED = "requested"
    APPROVED = "approved"
    DENIED = "denied"
    GRANTED = "granted"
    REVOKED = "revoked"
    EXPIRED = "expired"
    FAILED = "failed"


class AccessError(ValueError):
    """A call the book cannot take: an unknown grant (`missing`, 404) or one in the wrong state."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def _when(time: float) -> str:
    """Write a time for people: 2026-11-25T08:00:00Z."""
    return datetime.fromtimestamp(time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class Grant:
    """One role for one subject, from its request to its end; live, snapshot with to_dict."""

    id: int
    role: str
    subject: str
    requested_by: str
    requested_at: float
    request: int  # the request that asked for it
    duration: float  # seconds, counted from approval
    state: GrantState
    rights: tuple[str, ...]  # as the policy said when it was asked for
    grant_runbook: str
    revoke_runbook: str  # the one that removes it, even if the role leaves the policy later
    source: str = ""
    approve_by: float | None = None  # while pending approval
    granted_by: str = ""  # the approver, or "policy"
    expires_at: float | None = None  # set at approval
    granted_at: float | None = None  # when the grant runbook succeeded
    ending: str = ""  # while being removed: the final state it is headed for
    ended_by: str = ""
    ended_at: float | None = None
    why: str = ""  # why it ended (or is ending)
    revoke_failures: int = 0  # failed revoke runs so far
    retry_at: float | None = None  # while revoking: when the revoke runbook runs again

    @property
    def current(self) -> bool:
        """Tell whether it is still in the book (not in a final state)."""
        return self.state not in FINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form the store keeps (a snapshot)."""
        return {
            "id": self.id,
            "role": self.role,
            "subject": self.subject,
            "requested_by": self.requested_by,
            "requested_at": self.requested_at,
            "request": self.request,
            "duration": self.duration,
            "state": str(self.state),
            "rights": list(self.rights),
            "grant_runbook": self.grant_runbook,
            "revoke_runbook": self.revoke_runbook,
            "source": self.source,
            "approve_by": self.approve_by,
            "granted_by": self.granted_by,
            "expires_at": self.expires_at,
            "granted_at": self.granted_at,
            "ending": self.ending,
            "ended_by": self.ended_by,
            "ended_at": self.ended_at,
            "why": self.why,
            "revoke_failures": self.revoke_failures,
            "retry_at": self.retry_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Grant:
        """Rebuild a grant saved by to_dict; AccessError names what is damaged."""
        if not isinstance(data, Mapping):
            raise AccessError("a grant record must be a mapping")
        missing = [k for k in _GRANT_FIELDS if k not in data and k not in _LATER_FIELDS]
        if missing:
            raise AccessError(f"grant record lacks {', '.join(missing)}")
        texts = (
            "role",
            "subject",
            "requested_by",
            "grant_runbook",
            "revoke_runbook",
            "source",
            "granted_by",
            "ended_by",
            "why",
        )
        for key in texts:
            if not isinstance(data[key], str):
                raise AccessError(f"grant record field '{key}' must be text")
        for key in ("id", "request"):
            if not _is_id(data[key]):
                raise AccessError(f"grant record field '{key}' must be a whole number >= 1")
        state = data["state"]
        if state not in _GRANT_STATES:
            raise AccessError(f"grant record has unknown state {state!r}")
        ending = data["ending"]
        if ending not in ("", *(str(s) for s in FINAL_STATES)):
            raise AccessError(f"grant record has unknown ending {ending!r}")
        rights = data["rights"]
        if not isinstance(rights, list) or not all(isinstance(r, str) for r in rights):
            raise AccessError("grant record field 'rights' must list texts")
        return cls(
            id=data["id"],
            role=data["role"],
            subject=data["subject"],
            requested_by=data["requested_by"],
            requested_at=_time(data, "requested_at"),
            request=data["request"],
            duration=_time(data, "duration"),
            state=GrantState(state),
            rights=tuple(rights),
            grant_runbook=data["grant_runbook"],
            revoke_runbook=data["revoke_runbook"],
            source=data["source"],
            approve_by=_optional_time(data, "approve_by"),
            granted_by=data["granted_by"],
            expires_at=_optional_time(data, "expires_at"),
            granted_at=_optional_time(data, "granted_at"),
            ending=ending,
            ended_by=data["ended_by"],
            ended_at=_optional_time(data, "ended_at"),
            why=data["why"],
            revoke_failures=_count(data.get("revoke_failures", 0)),
            retry_at=_optional_time(data, "retry_at") if "retry_at" in data else None,
        )


_LATER_FIELDS = frozenset({"revoke_failures", "retry_at"})  # records from before they came
_GRANT_FIELDS = tuple(Grant.__dataclass_fields__)
_GRANT_STATES = frozenset(str(s) for s in GrantState)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AccessError("grant record field 'revoke_failures' must be a whole number >= 0")
    return value


def _time(data: Mapping[str, Any], key: str) -> float:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AccessError(f"record field '{key}' must be a finite number")
    return float(value)


def _optional_time(data: Mapping[str, Any], key: str) -> float | None:
    return None if data[key] is None else _time(data, key)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the access audit log: who did or decided what, and why."""

    time: float
    action: AuditAction
    role: str  # "*" for a revoke of everything a subject holds
    subject: str
    by: str  # a person, "rule:NAME", "policy", "expiry" or a runbook's name
    why: str
    grant: int | None = None
    request: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form the store keeps."""
        return {
            "time": self.time,
            "action": str(self.action),
            "role": self.role,
            "subject": self.subject,
            "by": self.by,
            "why": self.why,
            "grant": self.grant,
            "request": self.request,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        """Rebuild an entry saved by to_dict; AccessError names what is damaged."""
        if not isinstance(data, Mapping) or any(k not in data for k in _AUDIT_FIELDS):
            raise AccessError(f"an audit record needs {', '.join(_AUDIT_FIELDS)}")
        if data["action"] not in _ACTIONS:
            raise AccessError(f"audit record has unknown action {data['action']!r}")
        for key in ("role", "subject", "by", "why"):
            if not isinstance(data[key], str):
                raise AccessError(f"audit record field '{key}' must be text")
        for key in ("grant", "request"):
            if data[key] is not None and not _is_id(data[key]):
                raise AccessError(f"audit record field '{key}' must be a whole number or null")
        return cls(
            time=_time(data, "time"),
            action=AuditAction(data["action"]),
            role=data["role"],
            subject=data["subject"],
            by=data["by"],
            why=data["why"],
            grant=data["grant"],
            request=data["request"],
        )


_AUDIT_FIELDS = tuple(AuditEntry.__dataclass_fields__)
_ACTIONS = frozenset(str(a) for a in AuditAction)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which audit entries to show; every field left None matches everything."""

    subject: str | None = None
    role: str | None = None
    action: AuditAction | None = None
    since: float | None = None  # inclusive
    until: float | None = None  # exclusive
    grant: int | None = None

    def matches(self, entry: AuditEntry) -> bool:
        """Tell whether the entry passes every filter given."""
        return (
            (self.subject is None or entry.subject == self.subject)
            and (self.role is None or entry.role == self.role)
            and (self.action is None or entry.action == self.action)
            and (self.since is None or entry.time >= self.since)
            and (self.until is None or entry.time < self.until)
            and (self.grant is None or entry.grant == self.grant)
        )

    def select(
        self, entries: Iterable[AuditEntry], *, limit: int | None = None
    ) -> list[AuditEntry]:
        """Return the entries that match, in the order given, at most `limit` of them."""
        found: list[AuditEntry] = []
        for entry in entries:
            if limit is not None and len(found) >= limit:
                break
            if self.matches(entry):
                found.append(entry)
        return found


@dataclass(frozen=True, slots=True)
class ProvisionRun:
    """A runbook the caller should run now: apply (`grant`) or remove (`revoke`) a grant."""

    grant: int
    action: Literal["grant", "revoke"]
    runbook: str
    role: str
    subject: str
    rights: tuple[str, ...]
    expires_at: float | None

    def variables(self) -> dict[str, Any]:
        """Return what the runbook's templates see under `access`."""
        return {
            "access": {
                "grant": self.grant,
                "action": self.action,
                "role": self.role,
                "subject": self.subject,
                "rights": list(self.rights),
                "expires_at": self.expires_at,
            }
        }


@dataclass(frozen=True, slots=True)
class AccessOutcome:
    """What one call did: grants changed (live), audit entries to store, runbooks to run."""

    grants: tuple[Grant, ...] = ()
    audit: tuple[AuditEntry, ...] = ()
    runs: tuple[ProvisionRun, ...] = ()
    decision: Decision | None = None  # request(): the policy's (or the book's) word
    refused: str = ""  # approve()/reject(): why this person may not decide it (HTTP 403)


@dataclass(slots=True)
class _Changes:
    """Collects what a call did, in order, for its outcome."""

    grants: dict[int, Grant] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    runs: list[ProvisionRun] = field(default_factory=list)

    def log(self, grant: Grant, action: AuditAction, time: float, by: str, why: str) -> None:
        self.grants[grant.id] = grant
        self.audit.append(
            AuditEntry(time, action, grant.role, grant.subject, by, why, grant.id, grant.request)
        )

    def run(self, grant: Grant, action: Literal["grant", "revoke"]) -> None:
        self.grants[grant.id] = grant
        runbook = grant.grant_runbook if action == "grant" else grant.revoke_runbook
        self.runs.append(
            ProvisionRun(
                grant.id, action, runbook, grant.role, grant.subject, grant.rights, grant.expires_at
            )
        )

    def outcome(self, decision: Decision | None = None, refused: str = "") -> AccessOutcome:
        return AccessOutcome(
            tuple(self.grants.values()), tuple(self.audit), tuple(self.runs), decision, refused
        )


def _asked(request: AccessRequest) -> str:
    """Say what a request asks for, for its audit entry."""
    text = f"{request.kind} {request.role}"
    if request.kind == "grant" and request.duration is not None:
        text += (
            f" for {format_duration(request.duration)}" if math.isfinite(request.duration) else ""
        )
    return text + (f" ({request.source})" if request.source else "")


class AccessBook:
    """Current grants by id and by (role, subject), checked against an AccessPolicy."""

    __slots__ = ("_by_id", "_by_pair", "_next_grant", "_next_request", "_policy")

    def __init__(
        self,
        policy: AccessPolicy,
        *,
        grants: Iterable[Grant] = (),
        next_grant: int = 1,
        next_request: int = 1,
    ) -> None:
        self._policy = policy
        self._next_grant = next_grant
        self._next_request = next_request
        self._by_id: dict[int, Grant] = {}
        self._by_pair: dict[tuple[str, str], Grant] = {}
        for grant in sorted(grants, key=lambda g: g.id):
            self._next_grant = max(self._next_grant, grant.id + 1)
            self._next_request = max(self._next_request, grant.request + 1)
            if grant.current:
                self._by_id[grant.id] = grant
                self._by_pair[grant.role, grant.subject] = grant

    @property
    def policy(self) -> AccessPolicy:
        """Return the policy requests are checked against."""
        return self._policy

    def get(self, grant_id: int) -> Grant | None:
        """Return a current grant by id."""
        return self._by_id.get(grant_id)

    def current(self, role: str, subject: str) -> Grant | None:
        """Return the current grant of `role` to `subject`, if any."""
        return self._by_pair.get((role, subject))

    def grants(self) -> Iterator[Grant]:
        """Iterate over the current grants, oldest first."""
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    # -- requests -------------------------------------------------------------------------------

    def request(self, request: AccessRequest) -> AccessOutcome:
        """Check a request against the policy, then record it and say what to run."""
        request_id = self._next_request
        self._next_request += 1
        if request.kind == "revoke":
            return self._revoke(request, request_id)
        changes = _Changes()
        decision = self._policy.decide(request)
        if decision.verdict is not Verdict.DENIED:
            held = self._by_pair.get((request.role, request.subject))
            if held is not None:
                decision = Decision(Verdict.DENIED, _holding(held))
        role = self._policy.roles.get(request.role)
        if decision.verdict is Verdict.DENIED or role is None or decision.duration is None:
            changes.audit += [
                self._entry(request, request_id, AuditAction.REQUESTED, _asked(request)),
                self._entry(request, request_id, AuditAction.DENIED, decision.reason, POLICY),
            ]
            return changes.outcome(decision)
        grant = Grant(
            id=self._next_grant,
            role=role.name,
            subject=request.subject,
            requested_by=request.requested_by,
            requested_at=request.time,
            request=request_id,
            duration=decision.duration,
            state=_PENDING,
            rights=role.rights,
            grant_runbook=role.grant_runbook,
            revoke_runbook=role.revoke_runbook,
            source=request.source,
        )
        self._next_grant += 1
        self._by_id[grant.id] = grant
        self._by_pair[grant.role, grant.subject] = grant
        asked = _asked(request)
        if decision.approval is not None:
            grant.approve_by = request.time + decision.approval.ttl
            changes.log(
                grant,
                AuditAction.REQUESTED,
                request.time,
                request.requested_by,
                f"{asked}; {decision.reason}",
            )
            return changes.outcome(decision)
        changes.log(grant, AuditAction.REQUESTED, request.time, request.requested_by, asked)
        self._start(grant, POLICY, request.time, decision.reason, changes)
        return changes.outcome(decision)

    def _entry(
        self,
        request: AccessRequest,
        request_id: int,
        action: AuditAction,
        why: str,
        by: str | None = None,
    ) -> AuditEntry:
        """Build an audit entry about a request that has no grant."""
        return AuditEntry(
            request.time,
            action,
            request.role,
            request.subject,
            request.requested_by if by is None else by,
            why,
            None,
            request_id,
        )

    def _start(self, grant: Grant, by: str, now: float, why: str, changes: _Changes) -> None:
        """Approve a grant: its clock starts, and its grant runbook is to run."""
        grant.state = _PROVISIONING
        grant.approve_by = None
        grant.granted_by = by
        grant.expires_at = now + grant.duration
        changes.log(grant, AuditAction.APPROVED, now, by, why)
        changes.run(grant, "grant")

    def _revoke(self, request: AccessRequest, request_id: int) -> AccessOutcome:
        """Remove the subject's grant of a role, or every grant of theirs for role "*"."""
        changes = _Changes()
        if request.role == ALL_ROLES:
            targets = [g for g in self._by_id.values() if g.subject == request.subject]
        else:
            held = self._by_pair.get((request.role, request.subject))
            targets = [] if held is None else [held]
        asked = _asked(request)
        if not targets:
            decision = self._policy.decide(request)
            if decision.verdict is not Verdict.DENIED:
                what = "grants" if request.role == ALL_ROLES else f"{request.role} grant"
                decision = Decision(Verdict.DENIED, f"{request.subject} holds no {what}")
            changes.audit += [
                self._entry(request, request_id, AuditAction.REQUESTED, asked),
                self._entry(request, request_id, AuditAction.DENIED, decision.reason, POLICY),
            ]
            return changes.outcome(decision)
        reason = (
            f"revoking every grant of {request.subject}: always allowed"
            if request.role == ALL_ROLES
            else "revokes are always allowed"
        )
        grant_id = targets[0].id if request.role != ALL_ROLES else None
        changes.audit.append(
            AuditEntry(
                request.time,
                AuditAction.REQUESTED,
                request.role,
                request.subject,
                request.requested_by,
                f"{asked}; {reason}",
                grant_id,
                request_id,
            )
        )
        why = f"revoked by {request.requested_by}" + (
            f" ({request.source})" if request.source else ""
        )
        for grant in targets:
            self._end(
                grant,
                GrantState.REVOKED,
                by=request.requested_by,
                now=request.time,
                why=why,
                changes=changes,
            )
        return changes.outcome(Decision(Verdict.ALLOWED, reason))

    def _end(
        self, grant: Grant, final: GrantState, *, by: str, now: float, why: str, changes: _Changes
    ) -> None:
        """Head a current grant for `final`: at once if nothing was applied yet, else through
        its revoke runbook (after the grant runbook, if that is still running).
        """
        if grant.state == _REVOKING:
            if grant.retry_at is not None:  # asked again while waiting to retry: retry now
                grant.retry_at = None
                changes.run(grant, "revoke")
            return  # already being removed; that finishes first
        grant.ending, grant.ended_by, grant.why = str(final), by, why
        if grant.state == _PENDING:
            self._close(grant, final, now)
            action = AuditAction.DENIED if final == GrantState.DENIED else AuditAction(str(final))
            changes.log(grant, action, now, by, f"{why}, before approval")
        elif grant.state == _ACTIVE:
            grant.state = _REVOKING
            changes.run(grant, "revoke")
            if final == GrantState.EXPIRED:
                changes.log(grant, AuditAction.EXPIRED, now, by, why)
        else:  # provisioning: `provisioned` sends it on to its revoke runbook
            changes.grants[grant.id] = grant

    def _close(self, grant: Grant, final: GrantState, now: float) -> None:
        """Put a grant in a final state and drop it from the book."""
        grant.state = final
        grant.ended_at = now
        grant.approve_by = None
        self._by_id.pop(grant.id, None)
        if self._by_pair.get((grant.role, grant.subject)) is grant:
            del self._by_pair[grant.role, grant.subject]

    def _pending(self, grant_id: int, now: float) -> Grant:
        grant = self._by_id.get(grant_id)
        if grant is None:
            raise AccessError(f"no current grant {grant_id}", missing=True)
        if grant.state != _PENDING:
            raise AccessError(f"grant {grant_id} is {grant.state}, not pending approval")
        if grant.approve_by is not None and now >= grant.approve_by:
            raise AccessError(
                f"grant {grant_id} waited for approval until {_when(grant.approve_by)}; ask again"
            )
        return grant

    def _approval_problem(self, grant: Grant, by: str, api_role: Role) -> str:
        role = self._policy.roles.get(grant.role)
        if role is None:
            return f"{grant.role} is no longer in the access policy"
        problem = self._policy.approval_problem(
            role, by, api_role, requested_by=grant.requested_by, subject=grant.subject
        )
        return problem or ""

    def approve(self, grant_id: int, *, by: str, api_role: Role, now: float) -> AccessOutcome:
        """Approve a pending grant as person `by`; `refused` says why they may not (that is
        audited too, and the grant keeps waiting).
        """
        grant = self._pending(grant_id, now)
        changes = _Changes()
        refused = self._approval_problem(grant, by, api_role)
        if refused:
            changes.log(grant, AuditAction.DENIED, now, by, f"approval refused: {refused}")
            return changes.outcome(refused=refused)
        self._start(grant, by, now, f"approved by {by}", changes)
        return changes.outcome()

    def reject(
        self, grant_id: int, *, by: str, api_role: Role, now: float, why: str = ""
    ) -> AccessOutcome:
        """Reject a pending grant as person `by` (an approver, or the one who asked for it or
        would hold it: they may withdraw it); it ends as denied and nothing runs."""
        grant = self._pending(grant_id, now)
        changes = _Changes()
        withdrawn = by in (grant.requested_by, grant.subject)
        refused = "" if withdrawn else self._approval_problem(grant, by, api_role)
        if refused:
            changes.log(grant, AuditAction.DENIED, now, by, f"rejection refused: {refused}")
            return changes.outcome(refused=refused)
        grant.ended_by = by
        grant.why = f"{'withdrawn' if withdrawn else 'rejected'} by {by}" + (
            f": {why}" if why else ""
        )
        self._close(grant, GrantState.DENIED, now)
        changes.log(grant, AuditAction.DENIED, now, by, grant.why)
        return changes.outcome()

    # -- provisioning results -------------------------------------------------------------------

    def _running(self, grant_id: int, state: GrantState) -> Grant:
        grant = self._by_id.get(grant_id)
        if grant is None:
            raise AccessError(f"no current grant {grant_id}", missing=True)
        if grant.state != state:
            raise AccessError(f"grant {grant_id} is {grant.state}, not {state}")
        return grant

    def provisioned(
        self, grant_id: int, ok: bool, *, now: float, detail: str = ""
    ) -> AccessOutcome:
        """Record how the grant runbook went (`detail`: why, or a note on a success); a failure
        runs the revoke runbook to undo it."""
        grant = self._running(grant_id, _PROVISIONING)
        changes = _Changes()
        runbook = grant.grant_runbook
        if not ok:
            grant.state = _REVOKING
            grant.ending, grant.ended_by = str(GrantState.FAILED), runbook
            grant.why = f"{runbook} failed" + (f": {detail}" if detail else "")
            changes.log(
                grant,
                AuditAction.FAILED,
                now,
                runbook,
                f"{grant.why}; running {grant.revoke_runbook} to undo any part applied",
            )
            changes.run(grant, "revoke")
            return changes.outcome()
        grant.state = _ACTIVE
        grant.granted_at = now
        assert grant.expires_at is not None  # set at approval
        changes.log(
            grant,
            AuditAction.GRANTED,
            now,
            grant.granted_by,
            f"{runbook} applied {', '.join(grant.rights)} until {_when(grant.expires_at)}"
            + (f" ({detail})" if detail else ""),
        )
        if grant.ending:  # revoked while it was being applied
            final, by, why = GrantState(grant.ending), grant.ended_by, grant.why
            self._end(grant, final, by=by, now=now, why=why, changes=changes)
        elif now >= grant.expires_at:
            self._expire(grant, now, changes)
        return changes.outcome()

    def rerun(self, grant_id: int) -> AccessOutcome:
        """Ask for the runbook of a grant being provisioned or revoked again: its last run was
        cut off by a stop (provisioners must be safe to run twice)."""
        grant = self._by_id.get(grant_id)
        if grant is None or grant.state not in (_PROVISIONING, _REVOKING) or grant.retry_at:
            raise AccessError(f"grant {grant_id} has no runbook to run again", missing=True)
        changes = _Changes()
        changes.run(grant, "grant" if grant.state == _PROVISIONING else "revoke")
        return changes.outcome()

    def revoked(self, grant_id: int, ok: bool, *, now: float, detail: str = "") -> AccessOutcome:
        """Record how the revoke runbook went: done, tried again later (as the policy's
        revoke_retry says), or, after the last attempt, failed for good (a person must check).
        """
        grant = self._running(grant_id, _REVOKING)
        if grant.retry_at is not None:
            raise AccessError(f"grant {grant_id} waits to try its revoke again; no run is due")
        changes = _Changes()
        runbook = grant.revoke_runbook
        final = GrantState(grant.ending or GrantState.REVOKED)
        if ok:
            self._close(grant, final, now)
            changes.log(
                grant,
                AuditAction.REVOKED,
                now,
                grant.ended_by,
                f"{grant.why}; {runbook} removed it" + (f" ({detail})" if detail else ""),
            )
            return changes.outcome()
        # Access that should be gone must not linger: the policy's revoke_retry says how
        # often and how long to try again before a person must look.
        retry = self._policy.retry
        grant.revoke_failures += 1
        failed = f"{runbook} failed" + (f": {detail}" if detail else "")
        attempt = f"attempt {grant.revoke_failures} of {retry.attempts}"
        if grant.revoke_failures < retry.attempts:
            grant.retry_at = now + retry.delay(grant.revoke_failures)
            again = f"trying again at {_when(grant.retry_at)}"
            changes.log(grant, AuditAction.FAILED, now, runbook, f"{failed}; {attempt}, {again}")
            return changes.outcome()
        self._close(grant, GrantState.FAILED, now)
        changes.log(
            grant,
            AuditAction.FAILED,
            now,
            runbook,
            f"{grant.why}; {failed} ({attempt}); "
            f"{grant.subject} may still hold {grant.role}: check by hand",
        )
        return changes.outcome()

    # -- timers ---------------------------------------------------------------------------------

    def _expire(self, grant: Grant, now: float, changes: _Changes) -> None:
        assert grant.expires_at is not None
        why = (
            f"ended at {_when(grant.expires_at)}, {format_duration(grant.duration)} after approval"
        )
        self._end(grant, GrantState.EXPIRED, by=EXPIRY, now=now, why=why, changes=changes)

    def expiring(self, now: float) -> AccessOutcome:
        """End the grants whose time is up (at `expires_at` exactly) and the requests whose
        approval did not come by `approve_by`, and run the revokes due again; for the caller's
        durable timer.
        """
        changes = _Changes()
        for grant in list(self._by_id.values()):
            if grant.state == _REVOKING and grant.retry_at is not None and now >= grant.retry_at:
                grant.retry_at = None
                changes.run(grant, "revoke")
            elif (
                grant.state == _ACTIVE and grant.expires_at is not None and now >= grant.expires_at
            ):
                self._expire(grant, now, changes)
            elif (
                grant.state == _PENDING and grant.approve_by is not None and now >= grant.approve_by
            ):
                why = f"not approved by {_when(grant.approve_by)}"
                grant.ended_by, grant.why = EXPIRY, why
                self._close(grant, GrantState.EXPIRED, now)
                changes.log(grant, AuditAction.EXPIRED, now, EXPIRY, why)
        return changes.outcome()

    def next_expiry(self) -> float | None:
        """Return when `expiring` next has work: the earliest expiry, approval deadline or
        revoke retry."""
        due = {_ACTIVE: "expires_at", _PENDING: "approve_by", _REVOKING: "retry_at"}
        times = [getattr(g, due[g.state]) for g in self._by_id.values() if g.state in due]
        found = [t for t in times if t is not None]
        return min(found) if found else None

    # -- reload and restart ---------------------------------------------------------------------

    def set_policy(self, policy: AccessPolicy, *, now: float) -> AccessOutcome:
        """Check requests from now on against `policy`; grants it no longer allows (their role
        is gone, or their subject may no longer hold it) are revoked or, if pending, denied.
        """
        self._policy = policy
        changes = _Changes()
        for grant in list(self._by_id.values()):
            role = policy.roles.get(grant.role)
            if role is None:
                why = f"{grant.role} is no longer in the access policy"
            elif not policy.may_hold(role, grant.subject):
                why = f"{grant.subject} may no longer hold {grant.role}"
            else:
                continue
            final = GrantState.DENIED if grant.state == _PENDING else GrantState.REVOKED
            self._end(grant, final, by=POLICY, now=now, why=why, changes=changes)
        return changes.outcome()

    def resume(self) -> AccessOutcome:
        """Say which runbooks to run again after a restart: those that were running."""
        changes = _Changes()
        for grant in self._by_id.values():
            if grant.state == _PROVISIONING:
                changes.run(grant, "grant")
            elif grant.state == _REVOKING and grant.retry_at is None:
                changes.run(grant, "revoke")  # one waiting to try again is left to its timer
        return changes.outcome()

    def to_dict(self) -> dict[str, Any]:
        """Return the current grants and counters as JSON-able data, for a restart."""
        return {
            "version": 1,
            "next_grant": self._next_grant,
            "next_request": self._next_request,
            "grants": [g.to_dict() for g in self._by_id.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], policy: AccessPolicy) -> AccessBook:
        """Rebuild a book saved by to_dict; AccessError names what is damaged."""
        if not isinstance(data, Mapping) or data.get("version") != 1:
            raise AccessError("access grants: not a version 1 record")
        for key in ("next_grant", "next_request"):
            if not _is_id(data.get(key)):
                raise AccessError(f"access grants: '{key}' must be a whole number >= 1")
        items = data.get("grants")
        if not isinstance(items, list):
            raise AccessError("access grants: 'grants' must be a list")
        grants: Sequence[Grant] = [Grant.from_dict(item) for item in items]
        return cls(
            policy,
            grants=grants,
            next_grant=data["next_grant"],
            next_request=data["next_request"],
        )


def _holding(grant: Grant) -> str:
    """Word why a second grant of the same role to the same subject is refused."""
    if grant.state == _ACTIVE and grant.expires_at is not None:
        return (
            f"{grant.subject} already holds {grant.role} until {_when(grant.expires_at)} "
            f"(grant {grant.id}); revoke it to ask again"
        )
    state = {
        _PENDING: "waiting for approval",
        _PROVISIONING: "being applied",
        _REVOKING: "being removed",
    }.get(grant.state, str(grant.state))
    return f"grant {grant.id} of {grant.role} to {grant.subject} is already {state}"
