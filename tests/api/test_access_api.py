"""The access endpoints against a real ApiServer and the stand-in access desk
(tests/standin_desks.py: the real AccessBook and policy; provisioning succeeds at once)."""

from __future__ import annotations

from typing import Any

import pytest

from apikit import TOKENS, ApiKit

OPERATOR, ADMIN = TOKENS["operator"], TOKENS["admin"]

CHANGES = [
    ("POST", "/api/v1/access/requests", {"role": "ssh", "subject": "carol"}),
    ("POST", "/api/v1/access/grants/1/approve", {}),
    ("POST", "/api/v1/access/grants/1/reject", {"why": "no"}),
    ("POST", "/api/v1/access/revoke", {"role": "*", "subject": "carol", "why": "left"}),
]


def ask(api: ApiKit, role: str, subject: str = "carol", **more: Any) -> dict[str, Any]:
    """Ask for a grant as the operator (olga); the decision."""
    body = {"role": role, "subject": subject, **more}
    answer = api.request("POST", "/api/v1/access/requests", body, token=OPERATOR)
    assert answer.status == 200, answer.body
    return dict(answer.body)


def audit(api: ApiKit, query: str = "") -> list[tuple[str, str, str, str]]:
    """The audit log, oldest first: action, role, by, why."""
    entries = api.request("GET", f"/api/v1/access/audit{query}").body["audit"]
    return [(e["action"], e["role"], e["by"], e["why"]) for e in reversed(entries)]


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
def test_every_change_needs_an_operator_token(
    api: ApiKit, method: str, path: str, body: dict[str, Any]
) -> None:
    """Test 401 without a token and 403 for a viewer, with nothing changed or audited."""
    ask(api, "db-admin")
    before = (api.request("GET", "/api/v1/access/grants").body, audit(api))
    assert api.request(method, path, body).status == 401
    assert api.request(method, path, body, token=TOKENS["viewer"]).status == 403
    assert (api.request("GET", "/api/v1/access/grants").body, audit(api)) == before


def test_the_policy_allows_denies_or_asks_for_approval(api: ApiKit) -> None:
    """Test the three verdicts: a grant for 30m made at once, one over max_duration denied
    (no grant, audited), one waiting for approval until its ttl."""
    allowed = ask(api, "ssh", duration="30m")
    assert (allowed["verdict"], allowed["grant"]["state"], allowed["grant"]["expires_at"]) == (
        "allowed",
        "active",
        "2026-11-25T00:30:00+00:00",
    )
    denied = ask(api, "ssh", "olga", duration=7200)
    assert denied == {
        "verdict": "denied",
        "reason": "duration 2h is over ssh's max_duration 1h",
        "grant": None,
    }
    waiting = ask(api, "db-admin")
    assert (waiting["verdict"], waiting["grant"]["state"], waiting["grant"]["approve_by"]) == (
        "needs_approval",
        "pending_approval",
        "2026-11-25T00:30:00+00:00",
    )
    assert [a for a, *_ in audit(api, "?role=ssh")] == ["requested", "approved", "granted",
                                                         "requested", "denied"]  # fmt: skip


def test_approvals_follow_the_policy_and_the_token_role(api: ApiKit) -> None:
    """Test that the asker may not approve (403, audited, still pending), the policy's approver
    with an admin token may, and a decided grant cannot be rejected (409)."""
    ask(api, "db-admin")
    own = api.request("POST", "/api/v1/access/grants/1/approve", token=OPERATOR)
    assert (own.status, own.body) == (403, {"error": "olga may not approve their own request"})
    assert api.request("GET", "/api/v1/access/grants/1").body["state"] == "pending_approval"
    yes = api.request("POST", "/api/v1/access/grants/1/approve", token=ADMIN)
    assert (yes.status, yes.body["state"], yes.body["granted_by"]) == (200, "active", "adam")
    late = api.request("POST", "/api/v1/access/grants/1/reject", {"why": "x"}, token=ADMIN)
    assert (late.status, late.body) == (
        409,
        {"error": "grant 1 is active, not pending approval"},
    )
    assert audit(api, "?action=denied") == [
        ("denied", "db-admin", "olga", "approval refused: olga may not approve their own request")
    ]


def test_a_rejected_grant_ends_denied_with_the_reason(api: ApiKit) -> None:
    """Test reject with why: the grant ends as denied and says who and why."""
    ask(api, "db-admin")
    no = api.request("POST", "/api/v1/access/grants/1/reject", {"why": "not now"}, token=ADMIN)
    assert (no.status, no.body["state"], no.body["why"]) == (
        200,
        "denied",
        "rejected by adam: not now",
    )
    assert api.request("POST", "/api/v1/access/grants/9/approve", token=ADMIN).status == 404


def test_revoke_one_role_or_everything(api: ApiKit) -> None:
    """Test revoking every grant of a subject with "*", then a revoke with nothing to remove
    (denied, audited)."""
    ask(api, "ssh")
    ask(api, "db-admin")
    api.request("POST", "/api/v1/access/grants/2/approve", token=ADMIN)
    body = {"role": "*", "subject": "carol", "why": "left the team"}
    gone = api.request("POST", "/api/v1/access/revoke", body, token=OPERATOR).body
    assert (gone["verdict"], [(g["id"], g["state"]) for g in gone["grants"]]) == (
        "allowed",
        [(1, "revoked"), (2, "revoked")],
    )
    body = {"role": "ssh", "subject": "carol", "why": "again"}
    none = api.request("POST", "/api/v1/access/revoke", body, token=OPERATOR).body
    assert none == {"verdict": "denied", "reason": "carol holds no ssh grant", "grants": []}
    listed = api.request("GET", "/api/v1/access/grants?state=revoked&role=db-admin").body
    assert [g["id"] for g in listed["grants"]] == [2]


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("POST", "/api/v1/access/requests", {"role": "ssh", "subject": "carol", "duration": "0s"},
         "duration must be like 30m, 2h or 1d, or seconds from 0 to 1e+09 (not 0)"),
        ("POST", "/api/v1/access/requests", {"role": "ssh", "subject": "carol", "duration": True},
         "duration must be like 30m, 2h or 1d, or seconds from 0 to 1e+09 (not 0)"),
        ("POST", "/api/v1/access/requests", {"subject": "carol"},
         "role is required: the access role to grant, like db-admin"),
        ("POST", "/api/v1/access/revoke", {"role": "ssh", "subject": "carol"},
         "why is required: say why, for the audit log"),
        ("GET", "/api/v1/access/audit?action=stolen", None,
         "action must be one of requested, approved, denied, granted, revoked, expired, failed"),
        ("GET", "/api/v1/access/audit?since=yesterday", None,
         "since must be epoch seconds or ISO 8601 with a UTC offset"),
        ("GET", "/api/v1/access/audit?until=2026-11-25T00:00:00", None,
         "until must be epoch seconds or ISO 8601 with a UTC offset"),
        ("GET", "/api/v1/access/grants?who=carol", None,
         "unknown parameter(s): who; known: state, subject, role, limit, offset"),
        ("GET", "/api/v1/access/grants?subject=", None,
         "subject must be 1 to 128 characters long, not 0"),
        ("GET", "/api/v1/access/grants?state=gone", None, "state must be one of pending_approval, "
         "provisioning, active, revoking, revoked, expired, denied, failed"),
    ],
)  # fmt: skip
def test_requests_and_queries_are_checked(
    api: ApiKit, method: str, path: str, body: dict[str, Any] | None, message: str
) -> None:
    """Test that bad bodies and queries are 400s saying what to fix, and nothing is audited."""
    answer = api.request(method, path, body, token=OPERATOR)
    assert (answer.status, answer.body) == (400, {"error": message})
    assert audit(api) == []


def test_the_audit_log_filters_by_time_and_limit(api: ApiKit) -> None:
    """Test since (inclusive) and until (exclusive) as epoch seconds and ISO 8601, and limit."""
    ask(api, "ssh")
    api.now += 3600
    ask(api, "ssh", "olga")
    later = audit(api, "?since=2026-11-25T01:00:00%2B00:00")
    assert [who for _, _, who, _ in later] == ["olga", "policy", "policy"]
    assert len(audit(api, f"?until={api.now}")) == 3
    assert len(audit(api, "?limit=2")) == 2
