"""The remediation run and kill-switch endpoints against a real ApiServer with the daemon's own
run desk (tocsin.desks.Runs over a real Remediator): runs are real tiny programs, and their
states come from what really happened to them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from apikit import T0, TOKENS, ApiKit

OPERATOR = TOKENS["operator"]
ADMIN = TOKENS["admin"]
SWITCH = "/api/v1/remediation/kill-switch"
WHEN = "2026-11-25T00:00:00+00:00"


def waiting(api: ApiKit, key: str = "web1") -> int:
    """Ask for a run of the approval-gated runbook; its id once it awaits approval."""
    run_id = api.remediate("gated", key=key)
    api.until(
        f"/api/v1/runs/{run_id}",
        lambda run: run["state"] == "awaiting_approval",
        f"run {run_id} to await approval",
    )
    return run_id


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
    waiting(api)
    switch = api.request("POST", SWITCH, {"why": "before"}, token=ADMIN).body
    assert api.request(method, path, body).status == 401
    assert api.request(method, path, body, token=TOKENS["viewer"]).status == 403
    if method == "DELETE":
        refused = api.request(method, path, body, token=OPERATOR)
        assert (refused.status, refused.body) == (
            403,
            {"error": "this needs the admin role; olga has operator"},
        )
    assert api.request("GET", "/api/v1/runs/1").body["state"] == "awaiting_approval"
    assert (
        api.request("GET", SWITCH).body
        == switch
        == {
            "engaged": True,
            "by": "adam",
            "at": WHEN,
            "why": "before",
        }
    )


def test_runs_are_listed_newest_first_by_state_and_page(api: ApiKit) -> None:
    """Test the list: every run, one state, limit and offset, and one run by id; the states
    are those of real runs (exit 0, /bin/false, a dry-run runbook)."""
    for runbook in ("restart-unit", "broken", "rehearse", "broken"):
        api.finished(api.remediate(runbook, status=0))

    def ids(query: str) -> list[int]:
        answer = api.request("GET", f"/api/v1/runs{query}")
        assert answer.status == 200, answer.body
        return [run["id"] for run in answer.body["runs"]]

    assert ids("") == [4, 3, 2, 1]
    assert ids("?state=failed") == [4, 2]
    assert ids("?state=succeeded") == [1]
    assert ids("?state=refused") == []
    assert ids("?limit=2&offset=1") == [3, 2]
    one = api.request("GET", "/api/v1/runs/3")
    assert (one.status, one.body["state"], one.body["created_at"], one.body["dry_run"]) == (
        200,
        "dry_run",
        WHEN,
        True,
    )
    assert one.body["reason"] == "dry run, nothing ran: would run exec /bin/true in / (timeout 30s)"
    assert one.body["result"] is None


def test_a_run_shows_what_it_ran_and_what_came_out(api: ApiKit) -> None:
    """Test a finished run's view: steps as rendered (argv quoted word by word), the summary
    as its reason, and each step's exit status and output."""
    run = api.finished(api.remediate("restart-unit", unit="web 1; reboot", said="ok\n", status=3))
    assert run["state"] == "failed"
    assert run["steps"][0] == "exec /bin/true restart 'web 1; reboot' in / (timeout 30s)"
    assert run["reason"].startswith("step 2 of 2 (exec) failed: exit 3 in ")
    assert run["result"]["ok"] is False
    assert [(s["exit_code"], s["stdout"]) for s in run["result"]["steps"]] == [(0, ""), (3, "ok\n")]
    assert run["started_at"] == run["finished_at"] == WHEN


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
    """Test that the token's principal decides: an approved run really runs, a rejected one
    never does, and only a waiting run can be decided (409: the run exists)."""
    waiting(api, "web1")
    waiting(api, "web2")
    approved = api.request("POST", "/api/v1/runs/1/approve", {"note": "go"}, token=OPERATOR)
    assert (approved.status, approved.body["reason"], approved.body["decided_by"]) == (
        200,
        "approved by olga",
        "olga",
    )
    done = api.finished(1)
    assert (done["state"], done["result"]["ok"], done["decided_by"]) == ("succeeded", True, "olga")
    rejected = api.request("POST", "/api/v1/runs/2/reject", raw=b"", token=ADMIN)
    assert (rejected.status, rejected.body["state"], rejected.body["reason"]) == (
        200,
        "rejected",
        "rejected by adam",
    )
    assert api.request("GET", "/api/v1/runs/2").body["result"] is None
    for decision in ("approve", "reject"):
        again = api.request("POST", f"/api/v1/runs/2/{decision}", token=OPERATOR)
        assert (again.status, again.body) == (409, {"error": "run 2 is not awaiting approval"})


def test_a_run_nobody_approves_in_time_expires(api: ApiKit) -> None:
    """Test that the approval ttl (30m) ends a waiting run as expired, which nobody can then
    approve."""
    waiting(api)
    assert api.request("GET", "/api/v1/runs/1").body["expires_at"] == "2026-11-25T00:30:00+00:00"
    api.now = T0 + 1800
    run = api.finished(1)
    assert (run["state"], run["reason"], run["started_at"]) == (
        "expired",
        "nobody approved it in time",
        None,
    )
    late = api.request("POST", "/api/v1/runs/1/approve", token=OPERATOR)
    assert (late.status, late.body) == (409, {"error": "run 1 is not awaiting approval"})


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
    waiting(api)
    answer = api.request("POST", "/api/v1/runs/1/approve", raw=raw, token=OPERATOR)
    assert (answer.status, answer.body) == (status, {"error": message})
    assert api.request("GET", "/api/v1/runs/1").body["state"] == "awaiting_approval"


def test_the_kill_switch_engaged_by_an_operator_is_released_by_an_admin(api: ApiKit) -> None:
    """Test status, engage (a why is required, twice is a 409) and release (admin only)."""
    assert api.request("GET", SWITCH).body == {"engaged": False, "by": "", "at": None, "why": ""}
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
    assert (twice.status, twice.body) == (409, {"error": "the kill switch is engaged already"})
    api.now = T0 + 60
    released = api.request("DELETE", SWITCH, token=ADMIN)
    assert (released.status, released.body) == (
        200,
        {"engaged": False, "by": "adam", "at": "2026-11-25T00:01:00+00:00", "why": ""},
    )
    again = api.request("DELETE", SWITCH, token=ADMIN)
    assert (again.status, again.body) == (409, {"error": "the kill switch is not engaged"})


def test_nothing_runs_while_the_kill_switch_is_engaged(api: ApiKit) -> None:
    """Test that a run asked for while the switch is engaged is refused saying so (nothing
    ran), and that one asked for after the release runs."""
    api.request("POST", SWITCH, {"why": "restarts loop"}, token=OPERATOR)
    stopped = api.finished(api.remediate("restart-unit", status=0))
    assert (stopped["state"], stopped["reason"], stopped["result"]) == (
        "refused",
        "refused: kill switch engaged by olga at 2026-11-25T00:00:00Z: restarts loop",
        None,
    )
    api.request("DELETE", SWITCH, token=ADMIN)
    assert api.finished(api.remediate("restart-unit", key="web2", status=0))["state"] == (
        "succeeded"
    )


def test_a_failing_store_is_a_503_not_a_500(api: ApiKit) -> None:
    """Test that reads the store cannot answer, and changes the writer can no longer save
    (it was given up at a shutdown deadline), answer 503 saying so."""
    waiting(api)
    with sqlite3.connect(api.db) as db:  # another process damaged the database
        db.execute("ALTER TABLE runs RENAME TO runs_gone")
    listing = api.request("GET", "/api/v1/runs")
    assert (listing.status, listing.body) == (
        503,
        {"error": f"could not read from the database {api.db}: no such table: runs"},
    )
    assert api.writer is not None
    api.run(api.writer.abandon())
    approve = api.request("POST", "/api/v1/runs/1/approve", token=OPERATOR)
    engage = api.request("POST", SWITCH, {"why": "stop"}, token=OPERATOR)
    expected = {
        "error": "the change was not saved: StoreWriter is not running; use it as `async with`"
    }
    assert (approve.status, approve.body) == (503, expected)
    assert (engage.status, engage.body) == (503, expected)


def test_reads_need_a_viewer_token_when_reads_are_closed(tmp_path: Path) -> None:
    """Test that with open_reads off the run list and the switch need a token."""
    with ApiKit(tmp_path, open_reads=False) as api:
        assert api.request("GET", "/api/v1/runs").status == 401
        assert api.request("GET", SWITCH).status == 401
        assert api.request("GET", SWITCH, token=TOKENS["viewer"]).status == 200
