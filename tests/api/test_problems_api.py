"""The problem and known-error endpoints against a real ApiServer and the daemon's own
ProblemDesk (tocsin.desks.Problems) over a real SQLite file."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apikit import TOKENS, ApiKit
from tocsin.desks import Problems

OPERATOR = TOKENS["operator"]
WHEN = "2026-11-25T00:00:00+00:00"

CHANGES = [
    ("POST", "/api/v1/problems", {"title": "disks fill up"}),
    ("PATCH", "/api/v1/problems/1", {"owner": "alice"}),
    ("POST", "/api/v1/problems/1/investigate", {}),
    ("POST", "/api/v1/problems/1/known-error", {}),
    ("POST", "/api/v1/problems/1/resolve", {}),
    ("POST", "/api/v1/problems/1/close", {}),
    ("POST", "/api/v1/problems/1/reopen", {}),
    ("POST", "/api/v1/problems/1/incidents", {"incident": 7}),
    ("POST", "/api/v1/known-errors", {"name": "x", "matchers": ["a=b"], "workaround": "w"}),
    ("DELETE", "/api/v1/known-errors/disk-full-tmp", None),
]


def desk(api: ApiKit) -> Problems:
    """The kit's problem desk."""
    assert api.problems is not None
    return api.problems


def everything(api: ApiKit) -> str:
    """Every problem with its timeline and every known error, as the desk reports them."""
    problems = api.run(desk(api).list(state=None, limit=1000, offset=0))
    detail = [api.run(desk(api).get(p["id"])) for p in problems]
    return json.dumps([detail, api.run(desk(api).known_errors())], sort_keys=True)


def create(api: ApiKit, **body: Any) -> dict[str, Any]:
    """Open a problem through the API as the operator; its view."""
    answer = api.request(
        "POST", "/api/v1/problems", {"title": "disks fill up", **body}, token=OPERATOR
    )
    assert answer.status == 201, answer.body
    return dict(answer.body)


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
def test_every_change_needs_an_operator_token(
    api: ApiKit, method: str, path: str, body: dict[str, Any] | None
) -> None:
    """Test 401 without a token and 403 for a viewer on each change, with nothing changed."""
    create(api)
    before = everything(api)
    assert api.request(method, path, body).status == 401
    assert api.request(method, path, body, token=TOKENS["viewer"]).status == 403
    assert everything(api) == before


def test_a_problem_through_its_lifecycle(api: ApiKit) -> None:
    """Test create (linked to incidents), each transition with its note and actor on the
    timeline, a known error only once its workaround is known, and a transition the state
    forbids as a 409 in the desk's words."""
    made = create(api, service="storage", category="disk", incidents=[3, 5])
    assert made == {
        "id": 1, "title": "disks fill up", "state": "new", "opened_at": WHEN,
        "service": "storage", "category": "disk", "fingerprint": "", "incidents": [3, 5],
        "incident_count": 2, "root_cause": "", "workaround": "", "owner": "",
        "known_error": "", "resolved_at": None, "closed_at": None,
    }  # fmt: skip
    early = api.request("POST", "/api/v1/problems/1/known-error", token=OPERATOR)
    assert (early.status, early.body) == (
        409,
        {
            "error": "problem 1 has no workaround or root cause yet; record them before "
            "calling it a known error"
        },
    )
    patched = api.request("PATCH", "/api/v1/problems/1", {"workaround": "gzip"}, token=OPERATOR)
    assert patched.status == 200, patched.body
    for action, state in [
        ("investigate", "investigating"),
        ("known-error", "known_error"),
        ("resolve", "resolved"),
        ("reopen", "investigating"),
        ("resolve", "resolved"),
        ("close", "closed"),
    ]:
        answer = api.request(
            "POST", f"/api/v1/problems/1/{action}", {"note": action}, token=OPERATOR
        )
        assert (answer.status, answer.body["state"]) == (200, state), answer.body
    for action, message in [
        ("investigate", "problem 1 is closed; it can move to investigating only from new"),
        ("reopen", "problem 1 is closed; only a resolved problem can be reopened"),
    ]:
        refused = api.request("POST", f"/api/v1/problems/1/{action}", token=OPERATOR)
        assert (refused.status, refused.body) == (409, {"error": message}), action
    for method, path, body, message in [
        (
            "PATCH",
            "/api/v1/problems/1",
            {"owner": "bob"},
            "problem 1 is closed; it cannot change any more",
        ),
        (
            "POST",
            "/api/v1/problems/1/incidents",
            {"incident": 9},
            "problem 1 is closed; link the incident to a new one",
        ),
    ]:
        frozen = api.request(method, path, body, token=OPERATOR)
        assert (frozen.status, frozen.body) == (409, {"error": message}), path
    detail = api.request("GET", "/api/v1/problems/1").body
    assert (detail["state"], detail["closed_at"], detail["incidents"]) == ("closed", WHEN, [3, 5])
    assert [(e["kind"], e["from"], e["to"], e["actor"], e["note"]) for e in detail["timeline"]] == [
        ("state", None, "new", "olga", ""),
        ("link", "new", "new", "olga", "incident 3 linked"),
        ("link", "new", "new", "olga", "incident 5 linked"),
        ("update", "new", "new", "olga", "workaround set"),
        ("state", "new", "investigating", "olga", "investigate"),
        ("state", "investigating", "known_error", "olga", "known-error"),
        ("state", "known_error", "resolved", "olga", "resolve"),
        ("state", "resolved", "investigating", "olga", "reopen"),
        ("state", "investigating", "resolved", "olga", "resolve"),
        ("state", "resolved", "closed", "olga", "close"),
    ]
    listed = api.request("GET", "/api/v1/problems?state=closed").body["problems"]
    assert [p["id"] for p in listed] == [1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "title is required"),
        ({"title": ""}, "title must be 1 to 500 characters long, not 0"),
        ({"title": "t" * 501}, "title must be 1 to 500 characters long, not 501"),
        ({"title": "t", "service": 5}, "service must be text"),
        (
            {"title": "t", "category": "c" * 201},
            "category must be 0 to 200 characters long, not 201",
        ),
        ({"title": "t", "incidents": 3}, "incidents must be a list of incident ids, like [12, 15]"),
        (
            {"title": "t", "incidents": [1, "2"]},
            "each of incidents must be a whole number from 1, like 42",
        ),
        (
            {"title": "t", "incidents": [True]},
            "each of incidents must be a whole number from 1, like 42",
        ),
        (
            {"title": "t", "incidents": [0]},
            "each of incidents must be a whole number from 1, like 42",
        ),
        (
            {"title": "t", "incidents": [2**63]},
            "each of incidents must be a whole number from 1, like 42",
        ),
        (
            {"title": "t", "incidents": [1.5]},
            "each of incidents must be a whole number from 1, like 42",
        ),
        ({"title": "t", "incidents": [4, 4.0]}, "incidents lists an id twice"),
        (
            {"title": "t", "incidents": list(range(1, 1002))},
            "incidents may list at most 1000 ids, not 1001",
        ),
        (
            {"title": "t", "state": "known_error"},
            "unknown field(s): state; known: title, service, category, incidents",
        ),
    ],
)
def test_create_bodies_are_checked(api: ApiKit, body: dict[str, Any], message: str) -> None:
    """Test that each mistake in a new problem is a 400 naming it, and nothing is created."""
    answer = api.request("POST", "/api/v1/problems", body, token=OPERATOR)
    assert (answer.status, answer.body) == (400, {"error": message})
    assert api.run(desk(api).list(state=None, limit=10, offset=0)) == []


def test_patch_sets_clears_and_validates(api: ApiKit) -> None:
    """Test root cause, workaround, owner and title: absent stays, "" clears text, null clears
    the owner; and the refusals."""
    create(api)
    path = "/api/v1/problems/1"
    set_all = {
        "root_cause": "no log rotation",
        "workaround": "gzip",
        "owner": "alice",
        "title": "logs",
    }
    answer = api.request("PATCH", path, set_all, token=OPERATOR)
    assert answer.status == 200
    assert {k: answer.body[k] for k in set_all} == set_all
    cleared = api.request("PATCH", path, {"owner": None, "workaround": ""}, token=OPERATOR).body
    assert (cleared["owner"], cleared["workaround"], cleared["root_cause"]) == (
        "",
        "",
        "no log rotation",
    )
    for body, message in [
        ({}, "give root_cause, workaround, owner or title"),
        ({"owner": ""}, "owner must be 1 to 200 characters long, not 0"),
        ({"owner": 3}, "owner must be text or null"),
        ({"root_cause": None}, "root_cause must be text"),
        ({"title": ""}, "title must be 1 to 500 characters long, not 0"),
        ({"workaround": "w" * 10_001}, "workaround must be 0 to 10000 characters long, not 10001"),
        (
            {"state": "closed"},
            "unknown field(s): state; known: root_cause, workaround, owner, title",
        ),
    ]:
        refused = api.request("PATCH", path, body, token=OPERATOR)
        assert (refused.status, refused.body) == (400, {"error": message}), body
    missing = api.request("PATCH", "/api/v1/problems/2", {"owner": "bob"}, token=OPERATOR)
    assert (missing.status, missing.body) == (404, {"error": "no problem 2"})


def test_linking_incidents(api: ApiKit) -> None:
    """Test linking an incident, once only (409), and the refusals of a bad body."""
    create(api, incidents=[3])
    path = "/api/v1/problems/1/incidents"
    linked = api.request("POST", path, {"incident": 8}, token=OPERATOR)
    assert (linked.status, linked.body["incidents"]) == (200, [3, 8])
    again = api.request("POST", path, {"incident": 8.0}, token=OPERATOR)
    assert (again.status, again.body) == (
        409,
        {"error": "incident 8 is already linked to problem 1"},
    )
    for body, message in [
        ({}, "incident is required: the id of the incident to link"),
        ({"incident": "8"}, "incident must be a whole number from 1, like 42"),
        ({"incident": -1}, "incident must be a whole number from 1, like 42"),
        ({"incidents": [8]}, "unknown field(s): incidents; known: incident"),
    ]:
        refused = api.request("POST", path, body, token=OPERATOR)
        assert (refused.status, refused.body) == (400, {"error": message}), body
    other = api.request("POST", "/api/v1/problems/7/incidents", {"incident": 8}, token=OPERATOR)
    assert (other.status, other.body) == (404, {"error": "no problem 7"})


def test_listing_and_reading_problems(api: ApiKit) -> None:
    """Test the list (newest first, by state, paged, without timelines), one problem with its
    timeline, and the checked query and ids."""
    for title in ("one", "two", "three"):
        create(api, title=title)
    api.request("POST", "/api/v1/problems/2/investigate", token=OPERATOR)

    def titles(query: str) -> list[str]:
        answer = api.request("GET", f"/api/v1/problems{query}")
        assert answer.status == 200, answer.body
        assert all("timeline" not in p for p in answer.body["problems"])
        return [p["title"] for p in answer.body["problems"]]

    assert titles("") == ["three", "two", "one"]
    assert titles("?state=investigating") == ["two"]
    assert titles("?limit=1&offset=2") == ["one"]
    assert api.request("GET", "/api/v1/problems/2").body["timeline"][-1]["to"] == "investigating"
    for path, status, message in [
        (
            "/api/v1/problems?state=open",
            400,
            "state must be one of new, investigating, known_error, resolved, closed",
        ),
        (
            "/api/v1/problems?owner=me",
            400,
            "unknown parameter(s): owner; known: state, limit, offset",
        ),
        ("/api/v1/problems/4", 404, "no problem 4"),
        ("/api/v1/problems/one", 400, "a problem id is a whole number, like 42"),
    ]:
        answer = api.request("GET", path)
        assert (answer.status, answer.body) == (status, {"error": message}), path


def test_known_errors_are_added_listed_and_removed(api: ApiKit) -> None:
    """Test that matchers are stored in canonical form, a problem is linked, a name is used
    once, and only API-made known errors can be removed."""
    create(api)
    body = {
        "name": "nfs-stale",
        "matchers": ["service=nfs", {"name": "rule", "op": "=~", "value": "stale-.*"}],
        "workaround": "remount",
        "problem": 1,
    }
    made = api.request("POST", "/api/v1/known-errors", body, token=OPERATOR)
    assert (made.status, made.body) == (
        201,
        {
            "name": "nfs-stale", "source": "api", "matchers": ['service="nfs"', 'rule=~"stale-.*"'],
            "workaround": "remount", "root_cause": "", "problem": 1, "created_by": "olga",
            "created_at": WHEN,
        },
    )  # fmt: skip
    listed = api.request("GET", "/api/v1/known-errors").body["known_errors"]
    assert [(k["name"], k["source"]) for k in listed] == [
        ("disk-full-tmp", "config"),
        ("nfs-stale", "api"),
    ]
    twice = api.request("POST", "/api/v1/known-errors", body, token=OPERATOR)
    assert (twice.status, twice.body) == (409, {"error": "known error 'nfs-stale' already exists"})
    clash = api.request(
        "POST", "/api/v1/known-errors", {**body, "name": "disk-full-tmp"}, token=OPERATOR
    )
    assert (clash.status, clash.body) == (
        409,
        {
            "error": "known error 'disk-full-tmp' already exists in the config at known_errors.yaml:2:5"
        },
    )
    no_problem = api.request(
        "POST", "/api/v1/known-errors", {**body, "name": "n2", "problem": 9}, token=OPERATOR
    )
    assert (no_problem.status, no_problem.body) == (404, {"error": "no problem 9"})
    for name, status, message in [
        (
            "disk-full-tmp",
            409,
            "known error 'disk-full-tmp' comes from the config (known_errors.yaml:2:5); remove it there",
        ),
        ("nothing", 404, "no known error named 'nothing'"),
        ("a%20b", 404, "no known error named 'a b'"),
    ]:
        answer = api.request("DELETE", f"/api/v1/known-errors/{name}", token=OPERATOR)
        assert (answer.status, answer.body) == (status, {"error": message}), name
    removed = api.request("DELETE", "/api/v1/known-errors/nfs-stale", token=OPERATOR)
    assert (removed.status, removed.body["name"]) == (200, "nfs-stale")
    assert len(api.request("GET", "/api/v1/known-errors").body["known_errors"]) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": None}, "name must be text"),
        (
            {"name": "-x"},
            "name is required: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        ),
        (
            {"name": "a/b"},
            "name is required: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        ),
        (
            {"name": "x\n"},
            "name is required: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        ),
        ({"name": "n" * 65}, "name must be 1 to 64 characters long, not 65"),
        ({"matchers": "service=db"}, "matchers must be a list, not text"),
        ({"matchers": []}, "a known error needs at least one matcher, like host=web1"),
        (
            {"matchers": ["service=~.*"]},
            "a known error needs at least one matcher that does not match the empty string, like host=web1 or host=~.+ (these would also match incidents without the labels)",
        ),
        ({"matchers": ["service=~("]}, "matcher 'service=~(' has an invalid regex: missing ): ("),
        (
            {"matchers": ["9x=1"]},
            "matcher '9x=1' has an invalid label name '9x' (use letters, digits, '_' and '.', not starting with a digit)",
        ),
        ({"workaround": ""}, "workaround must be 1 to 10000 characters long, not 0"),
        ({"root_cause": 1}, "root_cause must be text"),
        ({"problem": "1"}, "problem must be a whole number from 1, like 42"),
        (
            {"source": "config"},
            "unknown field(s): source; known: name, matchers, workaround, root_cause, problem",
        ),
    ],
)
def test_known_error_bodies_are_checked(api: ApiKit, change: dict[str, Any], message: str) -> None:
    """Test that each mistake in a new known error is a 400 naming it, and nothing is added."""
    body = {"name": "ok", "matchers": ["service=db"], "workaround": "restart", **change}
    answer = api.request("POST", "/api/v1/known-errors", body, token=OPERATOR)
    assert (answer.status, answer.body) == (400, {"error": message})
    assert [k["name"] for k in api.run(desk(api).known_errors())] == ["disk-full-tmp"]


def test_required_known_error_fields(api: ApiKit) -> None:
    """Test that name, matchers and workaround are each required."""
    whole = {"name": "ok", "matchers": ["service=db"], "workaround": "restart"}
    for key, message in [
        (
            "name",
            "name is required: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        ),
        ("matchers", 'matchers is required, like ["service=db", "rule=~disk-.*"]'),
        ("workaround", "workaround is required: what to do until the cause is fixed"),
    ]:
        body = {k: v for k, v in whole.items() if k != key}
        answer = api.request("POST", "/api/v1/known-errors", body, token=OPERATOR)
        assert (answer.status, answer.body) == (400, {"error": message}), key
