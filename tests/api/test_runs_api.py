"""The remediation run and kill-switch endpoints against a real ApiServer, with the stand-in
RunDesk (tests/standin_desks.py) until the daemon's own desk exists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from apikit import T0, TOKENS, ApiKit
from standin_desks import StandInRuns
from tocsin.store.base import StoreError

OPERATOR = TOKENS["operator"]
ADMIN = TOKENS["admin"]
SWITCH = "/api/v1/remediation/kill-switch"
WHEN = "2026-11-25T00:00:00+00:00"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/runs/1/approve", {}),
        ("POST", "/api/v1/runs/1/reject", {"note": "no"}),
        ("POST", SWITCH, {"why": "it loops"}),
        ("DELETE", SWITCH, None),
    ],
)
def test_every_change_needs_a_token_with_the_role(
    api: ApiKit, method: str, path: str, body: dict[str, str] | None
) -> None:
    """Test 401 without a token and 403 for a viewer on each change (and for an operator on
    the release), with nothing changed."""
    api.runs.add(state="awaiting_approval")
    api.runs.switch["engaged"] = True
    assert api.request(method, path, body).status == 401
    assert api.request(method, path, body, token=TOKENS["viewer"]).status == 403
    if method == "DELETE":
        refused = api.request(method, path, body, token=OPERATOR)
        assert (refused.status, refused.body) == (
            403,
            {"error": "this needs the admin role; olga has operator"},
        )
    assert api.runs.runs[1]["state"] == "awaiting_approval"
    assert api.runs.switch == {"engaged": True, "by": None, "at": None, "why": None}


def test_runs_are_listed_newest_first_by_state_and_page(api: ApiKit) -> None:
    """Test the list: every run, one state, limit and offset, and one run by id."""
    for state in ("succeeded", "failed", "dry_run", "failed"):
        api.runs.add(state=state)

    def ids(query: str) -> list[int]:
        answer = api.request("GET", f"/api/v1/runs{query}")
        assert answer.status == 200, answer.body
        return [run["id"] for run in answer.body["runs"]]

    assert ids("") == [4, 3, 2, 1]
    assert ids("?state=failed") == [4, 2]
    assert ids("?state=refused") == []
    assert ids("?limit=2&offset=1") == [3, 2]
    one = api.request("GET", "/api/v1/runs/3")
    assert (one.status, one.body["state"], one.body["created_at"]) == (200, "dry_run", WHEN)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "?state=done",
            "state must be one of queued, awaiting_approval, running, succeeded, failed, "
            "dry_run, refused, rejected, expired, interrupted",
        ),
        ("?limit=0", "limit must be 1 to 1000 and offset 0 or more"),
        ("?limit=1001", "limit must be 1 to 1000 and offset 0 or more"),
        ("?offset=-1", "limit must be 1 to 1000 and offset 0 or more"),
        ("?limit=ten", "limit and offset must be whole numbers"),
        ("?runbook=x", "unknown parameter(s): runbook; known: state, limit, offset"),
        ("?state=failed&state=dry_run", "give state once"),
    ],
)
def test_list_queries_are_checked(api: ApiKit, query: str, message: str) -> None:
    """Test that a mistyped or repeated parameter is a 400, not a silently wider list."""
    answer = api.request("GET", f"/api/v1/runs{query}")
    assert (answer.status, answer.body) == (400, {"error": message})


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/v1/runs/9", 404, "no run 9"),
        ("/api/v1/runs/0", 404, "no run 0"),
        ("/api/v1/runs/99999999999999999999", 404, "no run 99999999999999999999"),
        ("/api/v1/runs/x1", 400, "a run id is a whole number, like 42"),
        ("/api/v1/runs/%D9%A5", 400, "a run id is a whole number, like 42"),
    ],
)
def test_ids_that_are_no_run(api: ApiKit, path: str, status: int, message: str) -> None:
    """Test 404 for ids never used and 400 for non-numbers, for reads and decisions alike."""
    for method, where in [("GET", path), ("POST", f"{path}/approve"), ("POST", f"{path}/reject")]:
        answer = api.request(method, where, token=OPERATOR)
        assert (answer.status, answer.body) == (status, {"error": message}), (method, where)


def test_approve_and_reject_a_waiting_run(api: ApiKit) -> None:
    """Test that the token's principal decides, with a note, and that only a waiting run can
    be decided (409 with the desk's words)."""
    api.runs.add(state="awaiting_approval")
    api.runs.add(state="awaiting_approval")
    approved = api.request("POST", "/api/v1/runs/1/approve", {"note": "go"}, token=OPERATOR)
    assert (approved.status, approved.body["state"], approved.body["reason"]) == (
        200,
        "queued",
        "approved by olga: go",
    )
    rejected = api.request("POST", "/api/v1/runs/2/reject", raw=b"", token=ADMIN)
    assert (rejected.status, rejected.body["reason"]) == (200, "rejected by adam")
    again = api.request("POST", "/api/v1/runs/1/reject", token=OPERATOR)
    assert (again.status, again.body) == (
        409,
        {"error": "run 1 is queued; only a waiting run is rejected"},
    )


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b'{"note": 1}', 400, "note must be text"),
        (b'{"note": "x", "actor": "root"}', 400, "unknown field(s): actor; known: note"),
        (
            b'{"note": "' + b"x" * 10_001 + b'"}',
            400,
            "note must be 0 to 10000 characters long, not 10001",
        ),
        (b"[1]", 400, "send a JSON object"),
        (b"{no", 400, "the body must be JSON (UTF-8)"),
        (b'{"note": "' + b"x" * 70_000 + b'"}', 413, "the body must be at most 64 KiB"),
    ],
)
def test_decision_bodies_are_checked(api: ApiKit, raw: bytes, status: int, message: str) -> None:
    """Test that a bad body is refused before the desk sees it: the run still waits."""
    api.runs.add(state="awaiting_approval")
    answer = api.request("POST", "/api/v1/runs/1/approve", raw=raw, token=OPERATOR)
    assert (answer.status, answer.body) == (status, {"error": message})
    assert api.runs.runs[1]["state"] == "awaiting_approval"


def test_the_kill_switch_engaged_by_an_operator_is_released_by_an_admin(api: ApiKit) -> None:
    """Test status, engage (a why is required, twice is a 409) and release (admin only)."""
    assert api.request("GET", SWITCH).body == {
        "engaged": False,
        "by": None,
        "at": None,
        "why": None,
    }
    for body, message in [
        ({}, "why is required: say what is wrong, for whoever releases it"),
        ({"why": ""}, "why must be 1 to 10000 characters long, not 0"),
        ({"why": "x", "until": "1h"}, "unknown field(s): until; known: why"),
    ]:
        answer = api.request("POST", SWITCH, body, token=OPERATOR)
        assert (answer.status, answer.body) == (400, {"error": message}), body
    assert api.request("POST", SWITCH, raw=b"", token=OPERATOR).status == 400
    engaged = api.request("POST", SWITCH, {"why": "restarts loop"}, token=OPERATOR)
    assert (engaged.status, engaged.body) == (
        200,
        {"engaged": True, "by": "olga", "at": WHEN, "why": "restarts loop"},
    )
    assert api.request("GET", SWITCH).body["engaged"] is True
    twice = api.request("POST", SWITCH, {"why": "again"}, token=ADMIN)
    assert (twice.status, twice.body) == (
        409,
        {"error": "the kill switch is already engaged by olga"},
    )
    api.now = T0 + 60
    released = api.request("DELETE", SWITCH, token=ADMIN)
    assert (released.status, released.body["engaged"], released.body["by"]) == (200, False, "adam")
    assert api.request("DELETE", SWITCH, token=ADMIN).status == 409


class FailingRuns(StandInRuns):
    """A desk whose store fails on every change."""

    async def approve(self, run_id: int, *, actor: str, note: str = "") -> dict[str, Any]:
        raise StoreError("disk I/O error")

    async def engage(self, *, actor: str, why: str) -> dict[str, Any]:
        raise StoreError("disk I/O error")

    def list(self, *, state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        raise StoreError("database is locked")


def test_a_failing_store_is_a_503_not_a_500(tmp_path: Path) -> None:
    """Test that StoreError from the desk answers 503 saying nothing was saved."""
    kit = ApiKit(tmp_path)
    kit.runs = FailingRuns(clock=lambda: T0)
    with kit as api:
        approve = api.request("POST", "/api/v1/runs/1/approve", token=OPERATOR)
        engage = api.request("POST", SWITCH, {"why": "stop"}, token=OPERATOR)
        listing = api.request("GET", "/api/v1/runs")
    expected = {"error": "the change was not saved: disk I/O error"}
    assert (approve.status, approve.body) == (503, expected)
    assert (engage.status, engage.body) == (503, expected)
    assert (listing.status, listing.body) == (503, {"error": "database is locked"})


def test_reads_need_a_viewer_token_when_reads_are_closed(tmp_path: Path) -> None:
    """Test that with open_reads off the run list and the switch need a token."""
    with ApiKit(tmp_path, open_reads=False) as api:
        assert api.request("GET", "/api/v1/runs").status == 401
        assert api.request("GET", SWITCH).status == 401
        assert api.request("GET", SWITCH, token=TOKENS["viewer"]).status == 200
