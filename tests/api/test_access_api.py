"""The access endpoints against a real ApiServer with the daemon's own access desk
(tocsin.servicedesk over a real Remediator): provisioning runbooks really run, and a grant is
active, or gone, once they have."""

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


def settled(api: ApiKit, grant_id: int, state: str) -> dict[str, Any]:
    """The grant once its runbook has brought it to `state`."""
    found: dict[str, Any] = api.until(
        f"/api/v1/access/grants/{grant_id}",
        lambda grant: grant["state"] == state,
        f"grant {grant_id} to be {state}",
    )
    return found


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
    """Test the verdicts: a grant for 30m provisioned by its runbook, one over max_duration
    and one for a subject who may not hold the role denied (no grant, audited), one waiting
    for approval until its ttl."""
    allowed = ask(api, "ssh", duration="30m")
    assert (allowed["verdict"], allowed["grant"]["state"], allowed["grant"]["expires_at"]) == (
        "allowed",
        "provisioning",
        "2026-11-25T00:30:00+00:00",
    )
    active = settled(api, 1, "active")
    assert (active["granted_by"], active["granted_at"]) == ("policy", "2026-11-25T00:00:00+00:00")
    assert api.noted() == ["grant ssh carol"]
    denied = ask(api, "ssh", "olga", duration=7200)
    assert denied == {
        "verdict": "denied",
        "reason": "duration 2h is over ssh's max_duration 1h",
        "grant": None,
    }
    outsider = ask(api, "ssh", "vera")
    assert (outsider["verdict"], outsider["grant"]) == ("denied", None)
    assert outsider["reason"].startswith("vera may not hold ssh")
    waiting = ask(api, "db-admin")
    assert (waiting["verdict"], waiting["grant"]["state"], waiting["grant"]["approve_by"]) == (
        "needs_approval",
        "pending_approval",
        "2026-11-25T00:30:00+00:00",
    )
    assert [a for a, *_ in audit(api, "?role=ssh")] == ["requested", "approved", "granted",
                                                         "requested", "denied",
                                                         "requested", "denied"]  # fmt: skip
    assert api.noted() == ["grant ssh carol"]


def test_approvals_follow_the_policy_and_the_token_role(api: ApiKit) -> None:
    """Test that the asker may not approve (403, audited, still pending), the policy's approver
    with an admin token may (then the grant runbook runs), and a decided grant cannot be
    rejected (409)."""
    ask(api, "db-admin")
    own = api.request("POST", "/api/v1/access/grants/1/approve", token=OPERATOR)
    assert (own.status, own.body) == (403, {"error": "olga may not approve their own request"})
    assert api.request("GET", "/api/v1/access/grants/1").body["state"] == "pending_approval"
    yes = api.request("POST", "/api/v1/access/grants/1/approve", token=ADMIN)
    assert (yes.status, yes.body["state"], yes.body["granted_by"]) == (200, "provisioning", "adam")
    assert settled(api, 1, "active")["expires_at"] == "2026-11-25T08:00:00+00:00"
    assert api.noted() == ["grant db-admin carol"]
    late = api.request("POST", "/api/v1/access/grants/1/reject", {"why": "x"}, token=ADMIN)
    assert (late.status, late.body) == (
        409,
        {"error": "grant 1 is active, not pending approval"},
    )
    assert audit(api, "?action=denied") == [
        ("denied", "db-admin", "olga", "approval refused: olga may not approve their own request")
    ]


def test_a_rejected_grant_ends_denied_with_the_reason(api: ApiKit) -> None:
    """Test reject with why: the grant ends as denied and says who and why; nothing runs."""
    ask(api, "db-admin")
    no = api.request("POST", "/api/v1/access/grants/1/reject", {"why": "not now"}, token=ADMIN)
    assert (no.status, no.body["state"], no.body["why"]) == (
        200,
        "denied",
        "rejected by adam: not now",
    )
    assert api.request("POST", "/api/v1/access/grants/9/approve", token=ADMIN).status == 404
    assert api.noted() == []


def test_the_requester_or_the_subject_may_withdraw_a_pending_grant(api: ApiKit) -> None:
    """Test that the one who asked (olga) and the one who would hold it (olga, asked for by
    adam) may withdraw a pending grant though they may not approve it: it ends denied,
    audited "withdrawn by"; nothing runs."""
    ask(api, "db-admin")
    mine = api.request(
        "POST", "/api/v1/access/grants/1/reject", {"why": "asked by mistake"}, token=OPERATOR
    )
    assert (mine.status, mine.body["state"], mine.body["why"]) == (
        200,
        "denied",
        "withdrawn by olga: asked by mistake",
    )
    body = {"role": "db-admin", "subject": "olga"}
    asked = api.request("POST", "/api/v1/access/requests", body, token=ADMIN).body
    assert asked["grant"]["state"] == "pending_approval"
    theirs = api.request("POST", "/api/v1/access/grants/2/reject", token=OPERATOR)
    assert (theirs.status, theirs.body["state"], theirs.body["why"]) == (
        200,
        "denied",
        "withdrawn by olga",
    )
    assert audit(api, "?action=denied") == [
        ("denied", "db-admin", "olga", "withdrawn by olga: asked by mistake"),
        ("denied", "db-admin", "olga", "withdrawn by olga"),
    ]
    assert api.noted() == []


def test_only_an_approver_may_reject_a_grant_for_somebody_else(api: ApiKit) -> None:
    """Test that olga, neither the asker nor the subject nor an approver, may not reject
    adam's request for carol: 403, audited, and the grant still waits."""
    body = {"role": "db-admin", "subject": "carol"}
    api.request("POST", "/api/v1/access/requests", body, token=ADMIN)
    refused = api.request("POST", "/api/v1/access/grants/1/reject", {"why": "no"}, token=OPERATOR)
    assert refused.status == 403
    assert api.request("GET", "/api/v1/access/grants/1").body["state"] == "pending_approval"
    assert audit(api, "?action=denied") == [
        ("denied", "db-admin", "olga", f"rejection refused: {refused.body['error']}")
    ]


def test_revoke_one_role_or_everything(api: ApiKit) -> None:
    """Test revoking every grant of a subject with "*" (their revoke runbooks run), then a
    revoke with nothing to remove (denied, audited)."""
    ask(api, "ssh")
    ask(api, "db-admin")
    api.request("POST", "/api/v1/access/grants/2/approve", token=ADMIN)
    settled(api, 1, "active")
    settled(api, 2, "active")
    body = {"role": "*", "subject": "carol", "why": "left the team"}
    gone = api.request("POST", "/api/v1/access/revoke", body, token=OPERATOR).body
    assert (gone["verdict"], [(g["id"], g["state"]) for g in gone["grants"]]) == (
        "allowed",
        [(1, "revoking"), (2, "revoking")],
    )
    for grant_id in (1, 2):
        revoked = settled(api, grant_id, "revoked")
        assert revoked["why"] == "revoked by olga (api: left the team)"
    assert sorted(api.noted()[2:]) == ["revoke db-admin carol", "revoke ssh carol"]
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
    settled(api, 1, "active")
    api.now += 3600
    ask(api, "ssh", "olga")
    settled(api, 2, "active")
    later = audit(api, "?since=2026-11-25T01:00:00%2B00:00")
    assert [who for _, _, who, _ in later] == ["olga", "policy", "policy"]
    assert len(audit(api, f"?until={api.now}")) == 3
    assert len(audit(api, "?limit=2")) == 2
