"""Access grants: request to revoke on a virtual clock, the audit entry of every path, restart."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tocsin.engine.clock import ManualClock
from tocsin.records.access import (
    AccessBook,
    AccessError,
    AccessOutcome,
    AuditAction,
    AuditEntry,
    AuditQuery,
    Grant,
    GrantState,
    ProvisionRun,
)
from tocsin.records.access_policy import AccessPolicy, AccessRequest, parse_access
from tocsin.tokens import Role
from tocsin.yamlsrc import Mark, load_yaml

NOW = 1_795_564_800.0  # 2026-11-25T00:00:00Z
HOUR = 3600.0

POLICY = """\
groups:
  dba: [alice, bob]
  oncall: [carol]
roles:
  - name: db-admin
    rights: [postgres:superuser]
    holders: [group:dba, user:carol]
    requesters: [group:dba, group:oncall]
    approval: {by: [group:dba], role: operator, ttl: 30m}
    max_duration: 8h
    provision: {grant: grant-db-admin, revoke: revoke-db-admin}
  - name: ssh
    rights: [ssh:login]
    holders: [group:oncall, group:dba]
    requesters: [group:oncall, group:dba, rule:mqtt-access]
    max_duration: 1h
    provision: {grant: grant-ssh, revoke: revoke-ssh}
"""


def policy(text: str = POLICY) -> AccessPolicy:
    """Parse an `access:` section."""
    return parse_access(
        load_yaml(text, name="access.yaml"),
        Mark("access.yaml", 1, 1),
        runbooks=("grant-db-admin", "revoke-db-admin", "grant-ssh", "revoke-ssh"),
        users=("alice", "bob", "carol"),
    )


@pytest.fixture
def book() -> AccessBook:
    """Return an empty book on the example policy."""
    return AccessBook(policy())


def ask(
    book: AccessBook,
    role: str,
    subject: str,
    by: str,
    *,
    at: float = NOW,
    duration: float | None = None,
    kind: Any = "grant",
    source: str = "",
) -> AccessOutcome:
    """Send a request to the book."""
    return book.request(
        AccessRequest(
            kind=kind,
            role=role,
            subject=subject,
            requested_by=by,
            duration=duration,
            source=source,
            time=at,
        )
    )


def log(outcome: AccessOutcome) -> list[tuple[str, str, str, str]]:
    """Return (action, role, by, why) of each audit entry."""
    return [(str(e.action), e.role, e.by, e.why) for e in outcome.audit]


def runs(outcome: AccessOutcome) -> list[tuple[int, str, str]]:
    """Return (grant, action, runbook) of each run asked for."""
    return [(r.grant, r.action, r.runbook) for r in outcome.runs]


def active(book: AccessBook, role: str = "ssh", subject: str = "carol", **kw: Any) -> Grant:
    """Grant a role that needs no approval and report its runbook ran well."""
    outcome = ask(book, role, subject, subject, **kw)
    grant = outcome.grants[0]
    book.provisioned(grant.id, True, now=kw.get("at", NOW) + 1)
    assert grant.state == GrantState.ACTIVE
    return grant


# ---------------------------------------------------------------------------------------------
# Granted at once, then expiry


def test_an_allowed_grant_is_provisioned_then_expires_exactly_at_its_time(
    book: AccessBook,
) -> None:
    """Test request -> provisioning -> active -> expired on a virtual clock, with the audit."""
    clock = ManualClock(NOW)
    asked = ask(book, "ssh", "carol", "carol", duration=HOUR / 2, source="api")
    assert asked.decision is not None
    assert asked.decision.allowed
    grant = asked.grants[0]
    assert (grant.id, grant.request, grant.state) == (1, 1, GrantState.PROVISIONING)
    assert (grant.granted_by, grant.expires_at) == ("policy", NOW + HOUR / 2)
    assert log(asked) == [
        ("requested", "ssh", "carol", "grant ssh for 30m (api)"),
        (
            "approved",
            "ssh",
            "policy",
            "carol may request ssh for carol for 30m; no approval needed",
        ),
    ]
    assert asked.runs == (
        ProvisionRun(1, "grant", "grant-ssh", "ssh", "carol", ("ssh:login",), NOW + HOUR / 2),
    )
    assert asked.runs[0].variables() == {
        "access": {
            "grant": 1,
            "action": "grant",
            "role": "ssh",
            "subject": "carol",
            "rights": ["ssh:login"],
            "expires_at": NOW + HOUR / 2,
        }
    }
    clock.advance_to(NOW + 2)
    done = book.provisioned(1, True, now=clock.now())
    assert (grant.state, grant.granted_at) == (GrantState.ACTIVE, NOW + 2)
    assert log(done) == [
        ("granted", "ssh", "policy", "grant-ssh applied ssh:login until 2026-11-25T00:30:00Z")
    ]
    assert book.next_expiry() == NOW + HOUR / 2
    clock.advance_to(NOW + HOUR / 2 - 0.001)
    early = book.expiring(clock.now())
    assert (early.audit, early.runs, grant.state) == ((), (), GrantState.ACTIVE)
    clock.advance_to(NOW + HOUR / 2)
    due = book.expiring(clock.now())
    assert grant.state == GrantState.REVOKING
    assert log(due) == [
        ("expired", "ssh", "expiry", "ended at 2026-11-25T00:30:00Z, 30m after approval")
    ]
    assert runs(due) == [(1, "revoke", "revoke-ssh")]
    assert book.next_expiry() is None
    assert book.expiring(clock.now() + 1).audit == ()  # revoking is not expired twice
    gone = book.revoked(1, True, now=clock.now() + 3)
    assert (grant.state, grant.ended_at, grant.ended_by) == (
        GrantState.EXPIRED,
        NOW + HOUR / 2 + 3,
        "expiry",
    )
    assert log(gone) == [
        (
            "revoked",
            "ssh",
            "expiry",
            "ended at 2026-11-25T00:30:00Z, 30m after approval; revoke-ssh removed it",
        )
    ]
    assert (len(book), book.get(1), book.current("ssh", "carol")) == (0, None, None)


def test_a_grant_without_a_duration_gets_the_roles_max(book: AccessBook) -> None:
    """Test that no duration means max_duration, counted from approval."""
    grant = ask(book, "ssh", "carol", "alice", at=NOW + 5).grants[0]
    assert (grant.duration, grant.expires_at) == (HOUR, NOW + 5 + HOUR)


def test_a_rule_may_request_for_a_holder(book: AccessBook) -> None:
    """Test an access request from a rule (e.g. over MQTT) named as rule:NAME."""
    outcome = ask(book, "ssh", "alice", "rule:mqtt-access", source="rule:mqtt-access event 7")
    assert log(outcome)[0] == (
        "requested",
        "ssh",
        "rule:mqtt-access",
        "grant ssh (rule:mqtt-access event 7)",
    )
    assert outcome.grants[0].source == "rule:mqtt-access event 7"


# ---------------------------------------------------------------------------------------------
# Denied


@pytest.mark.parametrize(
    ("role", "subject", "by", "duration", "reason"),
    [
        (
            "ssh",
            "carol",
            "dave",
            None,
            "dave may not request ssh (requesters: group oncall, group dba, rule mqtt-access)",
        ),
        (
            "db-admin",
            "dave",
            "alice",
            None,
            "dave may not hold db-admin (holders: group dba, user carol)",
        ),
        (
            "db-admin",
            "carol",
            "alice",
            12 * HOUR,
            "duration 12h is over db-admin's max_duration 8h",
        ),
        (
            "dba-admin",
            "carol",
            "alice",
            None,
            "unknown role 'dba-admin' (did you mean 'db-admin'?)",
        ),
    ],
)
def test_a_denied_request_records_the_reason_and_runs_nothing(  # noqa: PLR0917 - parametrized
    book: AccessBook, role: str, subject: str, by: str, duration: float | None, reason: str
) -> None:
    """Test that a request the policy refuses is audited as requested then denied, alone."""
    outcome = ask(book, role, subject, by, duration=duration)
    assert outcome.decision is not None
    assert outcome.decision.reason == reason
    asked = f"grant {role}" + (" for 12h" if duration else "")
    assert log(outcome) == [("requested", role, by, asked), ("denied", role, "policy", reason)]
    assert [(e.grant, e.request, e.subject, e.time) for e in outcome.audit] == [
        (None, 1, subject, NOW)
    ] * 2
    assert (outcome.runs, outcome.grants, len(book)) == ((), (), 0)


def test_a_second_grant_of_the_same_role_is_denied_while_one_is_current(
    book: AccessBook,
) -> None:
    """Test the duplicate refusals: active, being applied, waiting for approval."""
    ask(book, "ssh", "carol", "carol")
    outcome = ask(book, "ssh", "carol", "carol")
    assert log(outcome)[1][3] == "grant 1 of ssh to carol is already being applied"
    book.provisioned(1, True, now=NOW)
    outcome = ask(book, "ssh", "carol", "carol", at=NOW + 60)
    assert log(outcome)[1][3] == (
        "carol already holds ssh until 2026-11-25T01:00:00Z (grant 1); revoke it to ask again"
    )
    ask(book, "db-admin", "carol", "alice")
    outcome = ask(book, "db-admin", "carol", "bob")
    assert log(outcome)[1][3] == "grant 2 of db-admin to carol is already waiting for approval"
    assert len(book) == 2


# ---------------------------------------------------------------------------------------------
# Approval


def test_a_grant_that_needs_approval_waits_then_starts_its_clock_when_approved(
    book: AccessBook,
) -> None:
    """Test pending -> refused approvers -> approved -> provisioning, expiry from approval."""
    asked = ask(book, "db-admin", "carol", "alice", duration=2 * HOUR)
    grant = asked.grants[0]
    assert (grant.state, grant.approve_by, grant.expires_at) == (
        GrantState.PENDING_APPROVAL,
        NOW + 1800,
        None,
    )
    assert log(asked) == [
        (
            "requested",
            "db-admin",
            "alice",
            "grant db-admin for 2h; db-admin needs approval by group dba (API role operator or "
            "above) within 30m",
        )
    ]
    assert asked.runs == ()
    assert book.next_expiry() == NOW + 1800
    refused = book.approve(1, by="alice", api_role=Role.ADMIN, now=NOW + 60)
    assert refused.refused == "alice may not approve their own request"
    assert log(refused) == [
        ("denied", "db-admin", "alice", "approval refused: alice may not approve their own request")
    ]
    refused = book.approve(1, by="bob", api_role=Role.VIEWER, now=NOW + 60)
    assert refused.refused == (
        "bob may not approve db-admin: it needs API role operator or above, not viewer"
    )
    assert (grant.state, refused.runs) == (GrantState.PENDING_APPROVAL, ())
    approved = book.approve(1, by="bob", api_role=Role.OPERATOR, now=NOW + 600)
    assert approved.refused == ""
    assert (grant.state, grant.granted_by, grant.expires_at, grant.approve_by) == (
        GrantState.PROVISIONING,
        "bob",
        NOW + 600 + 2 * HOUR,
        None,
    )
    assert log(approved) == [("approved", "db-admin", "bob", "approved by bob")]
    assert runs(approved) == [(1, "grant", "grant-db-admin")]
    with pytest.raises(AccessError, match="grant 1 is provisioning, not pending approval"):
        book.approve(1, by="bob", api_role=Role.OPERATOR, now=NOW + 601)


def test_a_rejected_grant_is_denied_and_runs_nothing(book: AccessBook) -> None:
    """Test reject by an approver: denied with their words, out of the book."""
    grant = ask(book, "db-admin", "carol", "alice").grants[0]
    wrong = book.reject(1, by="bob", api_role=Role.VIEWER, now=NOW + 1)
    assert wrong.refused == (
        "bob may not approve db-admin: it needs API role operator or above, not viewer"
    )
    assert log(wrong) == [("denied", "db-admin", "bob", f"rejection refused: {wrong.refused}")]
    assert grant.state == GrantState.PENDING_APPROVAL
    outcome = book.reject(1, by="bob", api_role=Role.OPERATOR, now=NOW + 2, why="not today")
    assert (grant.state, grant.ended_at, outcome.runs) == (GrantState.DENIED, NOW + 2, ())
    assert log(outcome) == [("denied", "db-admin", "bob", "rejected by bob: not today")]
    assert book.get(1) is None
    with pytest.raises(AccessError, match="no current grant 1") as caught:
        book.reject(1, by="bob", api_role=Role.OPERATOR, now=NOW + 3)
    assert caught.value.missing


@pytest.mark.parametrize("who", ["alice", "carol"])
def test_who_asked_or_would_hold_a_grant_may_withdraw_it(book: AccessBook, who: str) -> None:
    """Test that the requester (alice) or the subject (carol) may withdraw a pending grant
    with any API role, though neither may approve it, and that it is audited as withdrawn."""
    grant = ask(book, "db-admin", "carol", "alice").grants[0]
    assert book.approve(1, by=who, api_role=Role.ADMIN, now=NOW + 1).refused
    outcome = book.reject(1, by=who, api_role=Role.VIEWER, now=NOW + 2, why="not needed")
    assert (outcome.refused, grant.state, outcome.runs) == ("", GrantState.DENIED, ())
    assert log(outcome) == [("denied", "db-admin", who, f"withdrawn by {who}: not needed")]


def test_an_approval_that_does_not_come_in_time_expires_the_request(book: AccessBook) -> None:
    """Test the approval TTL: expired exactly at approve_by, approving later is refused."""
    grant = ask(book, "db-admin", "carol", "alice").grants[0]
    assert book.expiring(NOW + 1799.999).audit == ()
    with pytest.raises(AccessError, match="waited for approval until 2026-11-25T00:30:00Z"):
        book.approve(1, by="bob", api_role=Role.ADMIN, now=NOW + 1800)
    outcome = book.expiring(NOW + 1800)
    assert grant.state == GrantState.EXPIRED
    assert log(outcome) == [
        ("expired", "db-admin", "expiry", "not approved by 2026-11-25T00:30:00Z")
    ]
    assert (outcome.runs, len(book)) == ((), 0)


# ---------------------------------------------------------------------------------------------
# Revokes


def test_a_revoke_runs_the_revoke_runbook_and_ends_the_grant(book: AccessBook) -> None:
    """Test revoke of an active grant by anyone, with the revoke always allowed."""
    grant = active(book)
    outcome = ask(book, "ssh", "carol", "rule:brute-force", kind="revoke", at=NOW + 60)
    assert outcome.decision is not None
    assert outcome.decision.allowed
    assert log(outcome) == [
        ("requested", "ssh", "rule:brute-force", "revoke ssh; revokes are always allowed")
    ]
    assert outcome.audit[0].grant == 1
    assert runs(outcome) == [(1, "revoke", "revoke-ssh")]
    assert grant.state == GrantState.REVOKING
    again = ask(book, "ssh", "carol", "alice", kind="revoke", at=NOW + 61)
    assert again.runs == ()  # already being removed
    done = book.revoked(1, True, now=NOW + 62)
    assert (grant.state, grant.ended_by) == (GrantState.REVOKED, "rule:brute-force")
    assert log(done) == [
        ("revoked", "ssh", "rule:brute-force", "revoked by rule:brute-force; revoke-ssh removed it")
    ]


def test_revoke_star_takes_every_grant_of_the_subject(book: AccessBook) -> None:
    """Test `revoke: "*"` on an active, a pending and a provisioning grant of one subject."""
    ssh = active(book, subject="alice")
    pending = ask(book, "db-admin", "alice", "bob").grants[0]
    other = active(book, subject="carol")
    outcome = ask(book, "*", "alice", "rule:brute-force", kind="revoke", source="rule:bf")
    assert log(outcome) == [
        (
            "requested",
            "*",
            "rule:brute-force",
            "revoke * (rule:bf); revoking every grant of alice: always allowed",
        ),
        (
            "revoked",
            "db-admin",
            "rule:brute-force",
            "revoked by rule:brute-force (rule:bf), before approval",
        ),
    ]
    assert runs(outcome) == [(ssh.id, "revoke", "revoke-ssh")]
    assert (ssh.state, pending.state, other.state) == (
        GrantState.REVOKING,
        GrantState.REVOKED,
        GrantState.ACTIVE,
    )


def test_a_revoke_while_the_grant_is_applied_runs_once_it_is_applied(book: AccessBook) -> None:
    """Test that a revoke during provisioning waits for the grant runbook, then removes it."""
    grant = ask(book, "ssh", "carol", "carol").grants[0]
    outcome = ask(book, "ssh", "carol", "alice", kind="revoke", at=NOW + 1)
    assert (outcome.runs, grant.state) == ((), GrantState.PROVISIONING)
    done = book.provisioned(grant.id, True, now=NOW + 2)
    assert [a for a, *_ in log(done)] == ["granted"]
    assert runs(done) == [(1, "revoke", "revoke-ssh")]
    assert grant.state == GrantState.REVOKING


def test_a_grant_applied_after_its_expiry_is_removed_at_once(book: AccessBook) -> None:
    """Test a grant runbook that finishes after expires_at: expired straight away."""
    grant = ask(book, "ssh", "carol", "carol", duration=60).grants[0]
    assert book.next_expiry() is None  # not active yet: `provisioned` handles it
    done = book.provisioned(grant.id, True, now=NOW + 60)
    assert [a for a, *_ in log(done)] == ["granted", "expired"]
    assert runs(done) == [(1, "revoke", "revoke-ssh")]


@pytest.mark.parametrize(
    ("role", "subject", "reason"),
    [
        ("ssh", "carol", "carol holds no ssh grant"),
        ("*", "carol", "carol holds no grants"),
        ("shh", "carol", "unknown role 'shh' (did you mean 'ssh'?)"),
    ],
)
def test_a_revoke_without_a_current_grant_is_denied(
    book: AccessBook, role: str, subject: str, reason: str
) -> None:
    """Test that revoking what is not held is audited as denied and runs nothing."""
    outcome = ask(book, role, subject, "alice", kind="revoke")
    assert log(outcome) == [
        ("requested", role, "alice", f"revoke {role}"),
        ("denied", role, "policy", reason),
    ]
    assert outcome.runs == ()


# ---------------------------------------------------------------------------------------------
# Failures


def test_a_failed_grant_runbook_is_undone_and_ends_failed(book: AccessBook) -> None:
    """Test that a failed provisioning runs the revoke runbook, and the grant ends failed."""
    grant = ask(book, "ssh", "carol", "carol").grants[0]
    failed = book.provisioned(1, False, now=NOW + 1, detail="exit status 2")
    assert log(failed) == [
        (
            "failed",
            "ssh",
            "grant-ssh",
            "grant-ssh failed: exit status 2; running revoke-ssh to undo any part applied",
        )
    ]
    assert runs(failed) == [(1, "revoke", "revoke-ssh")]
    undone = book.revoked(1, True, now=NOW + 2)
    assert grant.state == GrantState.FAILED
    assert log(undone) == [
        ("revoked", "ssh", "grant-ssh", "grant-ssh failed: exit status 2; revoke-ssh removed it")
    ]


def test_a_failed_revoke_is_tried_again_with_backoff_then_fails_for_good(
    book: AccessBook,
) -> None:
    """Test a revoke runbook failure: the grant stays revoking and its revoke runs again after
    1, 2, 4, 8 then 15 minutes (a durable timer, survives a restart); the last failure ends it
    failed with an audit entry asking for a person."""
    grant = active(book)
    ask(book, "ssh", "carol", "alice", kind="revoke", at=NOW + 5)
    now = NOW + 6
    first = book.revoked(grant.id, False, now=now, detail="timed out")
    assert (grant.state, grant.retry_at, len(book)) == (GrantState.REVOKING, now + 60, 1)
    assert log(first) == [
        (
            "failed",
            "ssh",
            "revoke-ssh",
            "revoke-ssh failed: timed out; attempt 1 of 8, trying again at 2026-11-25T00:01:06Z",
        )
    ]
    assert book.next_expiry() == now + 60
    assert runs(book.expiring(now + 59)) == []
    with pytest.raises(AccessError, match="waits to try its revoke again"):
        book.revoked(grant.id, False, now=now + 59)
    restored = AccessBook.from_dict(json.loads(json.dumps(book.to_dict())), book.policy)
    assert runs(restored.resume()) == []  # the timer runs it, not the restart
    waits = []
    for _ in range(2, 9):  # the default revoke_retry: 8 attempts
        due = book.next_expiry()
        assert due is not None
        waits.append(due - now)
        assert runs(book.expiring(due)) == [(1, "revoke", "revoke-ssh")]
        assert grant.retry_at is None
        now = due + 1
        last = book.revoked(grant.id, False, now=now, detail="exit status 1")
    assert waits == [60, 120, 240, 480, 900, 900, 900]
    assert (grant.state, len(book), book.next_expiry()) == (GrantState.FAILED, 0, None)
    assert log(last) == [
        (
            "failed",
            "ssh",
            "revoke-ssh",
            "revoked by alice; revoke-ssh failed: exit status 1 (attempt 8 of 8); carol may "
            "still hold ssh: check by hand",
        )
    ]


def test_asking_again_retries_a_failed_revoke_at_once(book: AccessBook) -> None:
    """Test that a revoke asked for while the last one waits to try again runs now, and that
    a success then ends the grant as the first revoke asked."""
    grant = active(book)
    ask(book, "ssh", "carol", "alice", kind="revoke", at=NOW + 5)
    book.revoked(grant.id, False, now=NOW + 6, detail="timed out")
    again = ask(book, "ssh", "carol", "bob", kind="revoke", at=NOW + 7)
    assert runs(again) == [(1, "revoke", "revoke-ssh")]
    assert grant.retry_at is None
    done = book.revoked(grant.id, True, now=NOW + 8)
    assert (grant.state, grant.revoke_failures) == (GrantState.REVOKED, 1)
    assert log(done)[-1][0] == "revoked"


def test_results_for_grants_not_running_are_refused(book: AccessBook) -> None:
    """Test AccessError for unknown grants and runbook results in the wrong state."""
    with pytest.raises(AccessError, match="no current grant 9"):
        book.provisioned(9, True, now=NOW)
    active(book)
    with pytest.raises(AccessError, match="grant 1 is active, not provisioning") as caught:
        book.provisioned(1, True, now=NOW)
    assert not caught.value.missing
    with pytest.raises(AccessError, match="grant 1 is active, not revoking"):
        book.revoked(1, True, now=NOW)


# ---------------------------------------------------------------------------------------------
# Policy reload and restart


def test_a_new_policy_revokes_what_it_no_longer_allows(book: AccessBook) -> None:
    """Test set_policy: a removed role's grant is revoked, a lost holder's request denied."""
    ssh = active(book, subject="alice")
    pending = ask(book, "db-admin", "carol", "alice").grants[0]
    kept = active(book, subject="carol")
    narrower = POLICY.replace("holders: [group:dba, user:carol]", "holders: [group:dba]")
    without_ssh = narrower[: narrower.index("  - name: ssh")]
    outcome = book.set_policy(policy(without_ssh), now=NOW + 10)
    assert book.policy.roles.keys() == {"db-admin"}
    assert runs(outcome) == [(ssh.id, "revoke", "revoke-ssh"), (kept.id, "revoke", "revoke-ssh")]
    assert log(outcome) == [
        ("denied", "db-admin", "policy", "carol may no longer hold db-admin, before approval")
    ]
    assert pending.state == GrantState.DENIED
    done = book.revoked(ssh.id, True, now=NOW + 11)
    assert log(done)[0][3] == "ssh is no longer in the access policy; revoke-ssh removed it"


def test_the_book_survives_a_restart_and_expires_on_time_after_it(book: AccessBook) -> None:
    """Test to_dict/from_dict through JSON, counters, resume, and expiry after the restart."""
    first = active(book, duration=HOUR)
    ask(book, "db-admin", "carol", "alice", at=NOW + 1)  # pending
    applying = ask(book, "ssh", "alice", "alice", at=NOW + 2).grants[0]
    ask(book, "ssh", "bob", "bob", at=NOW + 3)
    book.provisioned(4, True, now=NOW + 4)
    ask(book, "ssh", "bob", "bob", kind="revoke", at=NOW + 5)  # revoking
    saved = json.loads(json.dumps(book.to_dict()))
    back = AccessBook.from_dict(saved, policy())
    assert [g.to_dict() for g in back.grants()] == [g.to_dict() for g in book.grants()]
    assert back.current("ssh", "alice") is not None
    assert back.get(2) is not None
    assert runs(back.resume()) == [(applying.id, "grant", "grant-ssh"), (4, "revoke", "revoke-ssh")]
    assert back.next_expiry() == NOW + 1 + 1800  # db-admin's approval deadline
    assert ask(back, "ssh", "dave", "carol", at=NOW + 6).audit[0].request == 6
    assert ask(back, "ssh", "carol", "carol", kind="revoke", at=NOW + 7).audit[0].grant == 1
    back.revoked(first.id, True, now=NOW + 8)
    assert ask(back, "ssh", "carol", "carol", at=NOW + 9).grants[0].id == 5
    restored = AccessBook.from_dict(json.loads(json.dumps(back.to_dict())), policy())
    assert restored.expiring(NOW + 1 + 1800).audit[0].action == AuditAction.EXPIRED
    alice = restored.current("ssh", "alice")
    assert alice is not None
    restored.provisioned(alice.id, True, now=NOW + 10)
    assert restored.expiring(NOW + 2 + HOUR - 0.5).runs == ()
    assert runs(restored.expiring(NOW + 2 + HOUR)) == [(alice.id, "revoke", "revoke-ssh")]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"version": 2}, "access grants: not a version 1 record"),
        ({"next_grant": 0}, "access grants: 'next_grant' must be a whole number >= 1"),
        ({"grants": {}}, "access grants: 'grants' must be a list"),
        ({"grants": [{"id": 1}]}, "grant record lacks role, subject, requested_by"),
        ({"grants": [["x"]]}, "a grant record must be a mapping"),
    ],
)
def test_a_damaged_book_record_is_refused_with_the_reason(
    book: AccessBook, change: dict[str, Any], error: str
) -> None:
    """Test from_dict's refusals of damaged records."""
    data = book.to_dict() | change
    with pytest.raises(AccessError, match=error.replace("(", r"\(")):
        AccessBook.from_dict(data, policy())


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("state", "gone", "grant record has unknown state 'gone'"),
        ("ending", "later", "grant record has unknown ending 'later'"),
        ("id", True, "grant record field 'id' must be a whole number >= 1"),
        ("rights", "x", "grant record field 'rights' must list texts"),
        ("subject", 3, "grant record field 'subject' must be text"),
        ("expires_at", float("nan"), "record field 'expires_at' must be a finite number"),
    ],
)
def test_a_damaged_grant_record_is_refused_with_the_reason(
    book: AccessBook, key: str, value: Any, error: str
) -> None:
    """Test Grant.from_dict's refusals, each on an otherwise good record."""
    data = active(book).to_dict()
    assert Grant.from_dict(data).to_dict() == data
    with pytest.raises(AccessError, match=error):
        Grant.from_dict(data | {key: value})


# ---------------------------------------------------------------------------------------------
# Audit entries and queries


def test_audit_queries_filter_by_subject_role_action_time_and_grant(book: AccessBook) -> None:
    """Test AuditQuery over the entries of a small history, and the entries' round trip."""
    entries: list[AuditEntry] = []
    entries += ask(book, "ssh", "carol", "carol").audit
    entries += book.provisioned(1, True, now=NOW + 10).audit
    entries += ask(book, "db-admin", "dave", "alice", at=NOW + 20).audit
    entries += book.expiring(NOW + HOUR).audit
    assert [str(e.action) for e in entries] == [
        "requested",
        "approved",
        "granted",
        "requested",
        "denied",
        "expired",
    ]
    assert [e.action for e in AuditQuery(subject="dave").select(entries)] == [
        AuditAction.REQUESTED,
        AuditAction.DENIED,
    ]
    assert len(AuditQuery(role="ssh").select(entries)) == 4
    assert AuditQuery(action=AuditAction.DENIED).select(entries) == [entries[4]]
    assert AuditQuery(since=NOW + 10, until=NOW + 20).select(entries) == [entries[2]]
    assert AuditQuery(grant=1, action=AuditAction.EXPIRED).select(entries) == [entries[5]]
    assert AuditQuery().select(entries, limit=2) == entries[:2]
    assert [AuditEntry.from_dict(json.loads(json.dumps(e.to_dict()))) for e in entries] == entries
    with pytest.raises(AccessError, match="audit record has unknown action 'kept'"):
        AuditEntry.from_dict(entries[0].to_dict() | {"action": "kept"})
    with pytest.raises(AccessError, match="audit record field 'grant' must be a whole number"):
        AuditEntry.from_dict(entries[0].to_dict() | {"grant": "1"})
