"""The incident and on-call endpoints against a real ApiServer, SQLite file and desk."""

from __future__ import annotations

import datetime

import pytest

from apikit import T0, TOKENS, ApiKit

OPERATOR = TOKENS["operator"]

# Every endpoint that changes an incident, with a body it would accept.
CHANGES = [
    ("POST", "/api/v1/incidents/{id}/acknowledge", {}),
    ("POST", "/api/v1/incidents/{id}/start", {}),
    ("POST", "/api/v1/incidents/{id}/hold", {}),
    ("POST", "/api/v1/incidents/{id}/resolve", {}),
    ("POST", "/api/v1/incidents/{id}/close", {}),
    ("POST", "/api/v1/incidents/{id}/reopen", {}),
    ("POST", "/api/v1/incidents/{id}/assign", {"assignee": "alice"}),
    ("POST", "/api/v1/incidents/{id}/comments", {"text": "looking"}),
    ("PATCH", "/api/v1/incidents/{id}", {"impact": "high"}),
]


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
def test_every_change_needs_an_operator_token(
    api: ApiKit, method: str, path: str, body: dict[str, str]
) -> None:
    """Test that each change is refused without a token (401) and for a viewer (403), and
    that nothing changed."""
    incident = api.open_incident()
    url = path.format(id=incident)
    assert api.request(method, url, body).status == 401
    assert api.request(method, url, body, token=TOKENS["viewer"]).status == 403
    assert [
        e["actor"] for e in api.request("GET", f"/api/v1/incidents/{incident}").body["timeline"]
    ] == ["tocsin"]


def test_the_lifecycle_through_the_api(api: ApiKit) -> None:
    """Test acknowledge, start, hold, resolve, close and reopen, each on the timeline."""
    incident = api.open_incident()
    for action, state in [
        ("acknowledge", "acknowledged"),
        ("start", "in_progress"),
        ("hold", "on_hold"),
        ("resolve", "resolved"),
        ("reopen", "new"),
        ("resolve", "resolved"),
        ("close", "closed"),
    ]:
        api.now += 60
        answer = api.request(
            "POST", f"/api/v1/incidents/{incident}/{action}", {"note": action}, token=OPERATOR
        )
        assert (answer.status, answer.body["state"]) == (200, state), answer.body
    detail = api.request("GET", f"/api/v1/incidents/{incident}").body
    assert (
        detail["closed_at"] == datetime.datetime.fromtimestamp(T0 + 420, datetime.UTC).isoformat()
    )
    assert [(e["from"], e["to"], e["note"]) for e in detail["timeline"]][1:] == [
        ("new", "acknowledged", "acknowledge"),
        ("acknowledged", "in_progress", "start"),
        ("in_progress", "on_hold", "hold"),
        ("on_hold", "resolved", "resolve"),
        ("resolved", "new", "reopen"),
        ("new", "resolved", "resolve"),
        ("resolved", "closed", "close"),
    ]


def test_a_transition_the_state_forbids_is_a_conflict(api: ApiKit) -> None:
    """Test 409 with the desk's explanation for closing an open incident."""
    incident = api.open_incident()
    answer = api.request("POST", f"/api/v1/incidents/{incident}/close", token=OPERATOR)
    assert answer.status == 409
    assert answer.body["error"].startswith(f"incident {incident} is new")


def test_assign_sets_clears_and_validates(api: ApiKit) -> None:
    """Test assignee and group, null clearing one, and the refusals."""
    incident = api.open_incident()
    path = f"/api/v1/incidents/{incident}/assign"
    both = api.request("POST", path, {"assignee": "alice", "group": "dba"}, token=OPERATOR)
    assert (both.body["assignee"], both.body["group"]) == ("alice", "dba")
    cleared = api.request("POST", path, {"assignee": None}, token=OPERATOR)
    assert (cleared.body["assignee"], cleared.body["group"]) == ("", "dba")
    for body, message in [
        ({}, "give assignee, group or both (null clears one)"),
        ({"note": "x"}, "give assignee, group or both (null clears one)"),
        ({"assignee": 7}, "assignee must be text or null"),
        ({"assignee": ""}, "assignee must be 1 to 200 characters long, not 0"),
        ({"group": "g" * 201}, "group must be 1 to 200 characters long, not 201"),
        ({"assignee": "a", "note": ["x"]}, "note must be text"),
    ]:
        answer = api.request("POST", path, body, token=OPERATOR)
        assert (answer.status, answer.body) == (400, {"error": message}), body


def test_comments_are_bounded_text(api: ApiKit) -> None:
    """Test that a comment is 1 to 10000 characters of text and lands on the timeline."""
    incident = api.open_incident()
    path = f"/api/v1/incidents/{incident}/comments"
    made = api.request("POST", path, {"text": "x" * 10_000}, token=OPERATOR)
    assert made.status == 201
    assert made.body["id"] == incident
    for body, message in [
        ({}, "text is required"),
        ({"text": ""}, "text must be 1 to 10000 characters long, not 0"),
        ({"text": "x" * 10_001}, "text must be 1 to 10000 characters long, not 10001"),
        ({"text": None}, "text must be text"),
    ]:
        assert api.request("POST", path, body, token=OPERATOR).body == {"error": message}
    timeline = api.request("GET", f"/api/v1/incidents/{incident}/timeline").body["timeline"]
    assert timeline[-1]["kind"] == "comment"
    assert len(timeline[-1]["note"]) == 10_000


def test_rating_changes_the_priority_by_the_matrix(api: ApiKit) -> None:
    """Test PATCH with impact and urgency: P3 (medium/medium) becomes P1 (high/high)."""
    incident = api.open_incident()
    path = f"/api/v1/incidents/{incident}"
    assert api.request("PATCH", path, {"impact": "high"}, token=OPERATOR).body["priority"] == "P2"
    both = api.request("PATCH", path, {"urgency": "high", "note": "customers"}, token=OPERATOR)
    assert (both.body["impact"], both.body["urgency"], both.body["priority"]) == (
        "high",
        "high",
        "P1",
    )
    for body, message in [
        ({}, "give impact, urgency or both"),
        ({"impact": "huge"}, "impact must be one of high, medium, low"),
        ({"impact": 1}, "impact must be text"),
    ]:
        assert api.request("PATCH", path, body, token=OPERATOR).body == {"error": message}


@pytest.mark.parametrize(
    ("raw", "headers", "status", "message"),
    [
        (b"{not json", {}, 400, "the body must be JSON (UTF-8)"),
        (b'{"note": "\xff"}', {}, 400, "the body must be JSON (UTF-8)"),
        (b"[" * 30_000 + b"]" * 30_000, {}, 400, "the body must be JSON (UTF-8)"),
        (b'{"note": "x"}', {"Content-Type": "application/json; charset=klingon"}, 200, None),
        (b"[]", {}, 400, "send a JSON object"),
        (b'"note"', {}, 400, "send a JSON object"),
        (b'{"note": "' + b"x" * 70_000 + b'"}', {}, 413, "the body must be at most 64 KiB"),
        (
            b'{"note": "x", "by": 1, "actor": 2}',
            {},
            400,
            "unknown field(s): actor, by; known: note",
        ),
        (b'{"note": 5}', {}, 400, "note must be text"),
    ],
)
def test_bodies_are_checked_by_hand(
    api: ApiKit, raw: bytes, headers: dict[str, str], status: int, message: str | None
) -> None:
    """Test that malformed, oversized, deeply nested and mistyped bodies get a 4xx, never a 500."""
    incident = api.open_incident()
    answer = api.request(
        "POST",
        f"/api/v1/incidents/{incident}/acknowledge",
        raw=raw,
        headers=headers,
        token=OPERATOR,
    )
    assert answer.status == status
    if message is not None:
        assert answer.body == {"error": message}


def test_an_empty_body_is_no_note(api: ApiKit) -> None:
    """Test that transitions take no body at all."""
    incident = api.open_incident()
    answer = api.request(
        "POST", f"/api/v1/incidents/{incident}/acknowledge", raw=b"", token=OPERATOR
    )
    assert (answer.status, answer.body["state"]) == (200, "acknowledged")


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/v1/incidents/99", 404, "no incident 99"),
        ("/api/v1/incidents/0", 404, "no incident 0"),
        ("/api/v1/incidents/99999999999999999999", 404, "no incident 99999999999999999999"),
        ("/api/v1/incidents/abc", 400, "an incident id is a whole number, like 42"),
        ("/api/v1/incidents/%D9%A5", 400, "an incident id is a whole number, like 42"),
        ("/api/v1/incidents/99/timeline", 404, "no incident 99"),
        ("/api/v1/incidents/-1/timeline", 400, "an incident id is a whole number, like 42"),
    ],
)
def test_ids_that_are_no_incident(api: ApiKit, path: str, status: int, message: str) -> None:
    """Test 404 for ids never used (even beyond SQLite's integers) and 400 for non-numbers,
    for reads and changes alike."""
    read = api.request("GET", path)
    assert (read.status, read.body) == (status, {"error": message})
    if not path.endswith("timeline"):
        changed = api.request("POST", f"{path}/acknowledge", token=OPERATOR)
        assert (changed.status, changed.body) == (status, {"error": message})


def test_list_filters(api: ApiKit) -> None:
    """Test state, priority, service, assignee and group filters, limit and offset."""
    web = api.open_incident("web down", service="web", impact="high", urgency="high")
    db = api.open_incident("db slow", service="db")
    gone = api.open_incident("disk full", service="web")
    api.request("POST", f"/api/v1/incidents/{gone}/resolve", token=OPERATOR)
    api.request(
        "POST",
        f"/api/v1/incidents/{db}/assign",
        {"assignee": "bob", "group": "dba"},
        token=OPERATOR,
    )

    def ids(query: str) -> list[int]:
        answer = api.request("GET", f"/api/v1/incidents{query}")
        assert answer.status == 200, answer.body
        return [i["id"] for i in answer.body["incidents"]]

    assert ids("") == [gone, db, web]
    assert ids("?state=open") == [db, web]
    assert ids("?state=resolved,new") == [gone, db, web]
    assert ids("?state=resolved") == [gone]
    assert ids("?priority=P1") == [web]
    assert ids("?priority=P1,P3&service=web") == [gone, web]
    assert ids("?assignee=bob") == [db]
    assert ids("?assignee=") == [gone, web]
    assert ids("?group=dba&state=open") == [db]
    assert ids("?limit=1&offset=1") == [db]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "?state=opne",
            "state must be all, open or a list of new, acknowledged, in_progress, on_hold, resolved, closed",
        ),
        ("?priority=P9", "priority must be a list of P1, P2, P3, P4, P5"),
        ("?limit=0", "limit must be 1 to 1000 and offset 0 or more"),
        ("?limit=x", "limit and offset must be whole numbers"),
        ("?offset=-1", "limit must be 1 to 1000 and offset 0 or more"),
        (
            "?assigne=bob",
            "unknown parameter(s): assigne; known: state, priority, service, assignee, group, limit, offset",
        ),
        ("?state=open&state=all", "give state once (a comma-separated list where allowed)"),
    ],
)
def test_list_queries_are_checked(api: ApiKit, query: str, message: str) -> None:
    """Test that a mistyped or repeated parameter is refused rather than ignored."""
    assert api.request("GET", f"/api/v1/incidents{query}").body == {"error": message}


def test_oncall_now_and_at_a_time(api: ApiKit) -> None:
    """Test who is on call, with user details and the next handoff, at epoch and ISO times."""
    at = datetime.datetime(2026, 11, 28, 10, 0, tzinfo=datetime.UTC)  # a Saturday
    by_iso = api.request("GET", "/api/v1/oncall?at=2026-11-28T11:00:00%2B01:00")
    by_epoch = api.request("GET", f"/api/v1/oncall?at={at.timestamp():.0f}")
    assert by_iso.body == by_epoch.body
    assert by_iso.body == {
        "at": "2026-11-28T10:00:00+00:00",
        "oncall": [
            {"schedule": "ops", "on_call": "bob", "user": {"email": "bob@example.com"},
             "until": "2026-11-29T09:00:00+00:00"},
            {"schedule": "nobody", "on_call": "carol", "user": None,
             "until": "2026-11-30T00:00:00+00:00"},
        ],
    }  # fmt: skip
    assert api.request("GET", "/api/v1/oncall").status == 200
    for query, message in [
        (
            "?at=tomorrow",
            "at must be epoch seconds or ISO 8601 with a UTC offset, before the year 10000",
        ),
        (
            "?at=2026-11-28T10:00:00",
            "at must be epoch seconds or ISO 8601 with a UTC offset, before the year 10000",
        ),
        ("?when=now", "unknown parameter(s): when; known: at"),
    ]:
        assert api.request("GET", f"/api/v1/oncall{query}").body == {"error": message}
