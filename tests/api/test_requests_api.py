"""The catalog and service-request endpoints against a real ApiServer with the daemon's own
request desk (tocsin.servicedesk over a real Remediator): fulfilment runbooks really run, and
people fulfil the items that have none by hand."""

from __future__ import annotations

from typing import Any

import pytest

from apikit import TOKENS, ApiKit

OPERATOR, ADMIN = TOKENS["operator"], TOKENS["admin"]
VM = {"item": "new-vm", "input": {"size": 4}}
BY_HAND = ("start", "fulfil", "fail")

CHANGES = [
    ("POST", "/api/v1/requests", VM),
    ("POST", "/api/v1/requests/1/approve", {}),
    ("POST", "/api/v1/requests/1/reject", {"note": "no"}),
    ("POST", "/api/v1/requests/1/start", {}),
    ("POST", "/api/v1/requests/1/fulfil", {}),
    ("POST", "/api/v1/requests/1/fail", {"note": "no disk"}),
    ("POST", "/api/v1/requests/1/close", {}),
]


def submit(api: ApiKit, body: dict[str, Any] = VM) -> dict[str, Any]:
    """Submit through the API as the operator; the request's view."""
    answer = api.request("POST", "/api/v1/requests", body, token=OPERATOR)
    assert answer.status == 201, answer.body
    return dict(answer.body)


def approved_vm(api: ApiKit) -> int:
    """Submit a new-vm (no runbook) as the operator and approve it as the admin; its id."""
    request_id = int(submit(api)["id"])
    answer = api.request("POST", f"/api/v1/requests/{request_id}/approve", token=ADMIN)
    assert (answer.status, answer.body["state"]) == (200, "approved"), answer.body
    return request_id


def timeline(api: ApiKit, request_id: int) -> list[tuple[str, str, str]]:
    """The request's timeline: to, actor, note."""
    found = api.request("GET", f"/api/v1/requests/{request_id}").body["timeline"]
    return [(e["to"], e["actor"], e["note"]) for e in found]


def settled(api: ApiKit, request_id: int) -> dict[str, Any]:
    """The request once its fulfilment run has ended it."""
    found: dict[str, Any] = api.until(
        f"/api/v1/requests/{request_id}",
        lambda r: r["state"] in ("fulfilled", "failed"),
        f"request {request_id} to be fulfilled or failed",
    )
    return found


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
def test_every_change_needs_an_operator_token(
    api: ApiKit, method: str, path: str, body: dict[str, Any]
) -> None:
    """Test 401 without a token and 403 for a viewer, with nothing changed."""
    submit(api)
    before = api.request("GET", "/api/v1/requests/1").body
    assert api.request(method, path, body).status == 401
    assert api.request(method, path, body, token=TOKENS["viewer"]).status == 403
    assert api.request("GET", "/api/v1/requests/1").body == before


def test_the_catalog_lists_each_item_and_its_fields(api: ApiKit) -> None:
    """Test GET /api/v1/catalog: the items as CatalogItem.to_dict shows them."""
    items = api.request("GET", "/api/v1/catalog").body["items"]
    assert [(i["name"], i["approval"], i["sla"], i["runbook"]) for i in items] == [
        ("new-vm", "admin", 86400.0, None),
        ("reset-password", None, None, "reset-password"),
        ("restart-app", None, None, "gated"),
    ]
    assert items[0]["fields"][1] == {
        "name": "os", "type": "enum", "required": False, "description": "", "default": "debian",
        "values": ["debian", "alpine"],
    }  # fmt: skip


def test_a_request_through_approval_fulfilment_by_hand_and_close(api: ApiKit) -> None:
    """Test submit (defaults filled), an approval refused for a low token role (403), the
    admin's approval, a reject the state forbids (409), start and fulfil by hand, close, and
    the timeline naming each actor."""
    made = submit(api)
    assert (made["state"], made["input"], made["approval"]) == (
        "submitted",
        {"size": 4, "os": "debian"},
        "admin",
    )
    low = api.request("POST", "/api/v1/requests/1/approve", token=OPERATOR)
    assert (low.status, low.body["error"]) == (
        403,
        "request 1 can be approved only by a role of admin or above; olga is operator",
    )
    yes = api.request("POST", "/api/v1/requests/1/approve", {"note": "ok"}, token=ADMIN)
    assert (yes.status, yes.body["state"], yes.body["decided_by"]) == (200, "approved", "adam")
    late = api.request("POST", "/api/v1/requests/1/reject", token=ADMIN)
    assert late.status == 409
    started = api.request("POST", "/api/v1/requests/1/start", token=OPERATOR)
    assert (started.status, started.body["state"], started.body["run_id"]) == (
        200,
        "fulfilling",
        None,
    )
    done = api.request("POST", "/api/v1/requests/1/fulfil", {"note": "vm up"}, token=ADMIN)
    assert (done.status, done.body["state"]) == (200, "fulfilled")
    closed = api.request("POST", "/api/v1/requests/1/close", {"note": "thanks"}, token=OPERATOR)
    assert (closed.status, closed.body["state"]) == (200, "closed")
    assert timeline(api, 1) == [
        ("submitted", "olga", "via api"),
        ("approved", "adam", "ok"),
        ("fulfilling", "olga", "fulfilment started by hand"),
        ("fulfilled", "adam", "vm up"),
        ("closed", "olga", "thanks"),
    ]


def test_fulfil_or_fail_straight_from_approved(api: ApiKit) -> None:
    """Test that fulfil and fail imply the start (both on the timeline, by the caller), and
    that fail keeps its note as the reason."""
    approved_vm(api)
    approved_vm(api)
    done = api.request("POST", "/api/v1/requests/1/fulfil", token=OPERATOR)
    assert (done.status, done.body["state"], done.body["reason"]) == (200, "fulfilled", "")
    failed = api.request("POST", "/api/v1/requests/2/fail", {"note": "no capacity"}, token=ADMIN)
    assert (failed.status, failed.body["state"], failed.body["reason"]) == (
        200,
        "failed",
        "no capacity",
    )
    assert timeline(api, 1)[2:] == [
        ("fulfilling", "olga", "fulfilment started by hand"),
        ("fulfilled", "olga", ""),
    ]
    assert timeline(api, 2)[2:] == [
        ("fulfilling", "adam", "fulfilment started by hand"),
        ("failed", "adam", "no capacity"),
    ]
    assert [
        r["id"] for r in api.request("GET", "/api/v1/requests?state=failed").body["requests"]
    ] == [2]


@pytest.mark.parametrize("note", [None, "", "  \n "])
def test_failing_by_hand_needs_a_reason(api: ApiKit, note: str | None) -> None:
    """Test that fail without a non-blank note is a 400 and changes nothing."""
    approved_vm(api)
    before = api.request("GET", "/api/v1/requests/1").body
    body = {} if note is None else {"note": note}
    answer = api.request("POST", "/api/v1/requests/1/fail", body, token=OPERATOR)
    assert (answer.status, answer.body) == (
        400,
        {"error": "note is required: say why the request failed"},
    )
    assert api.request("GET", "/api/v1/requests/1").body == before


def test_a_refused_fulfilment_by_hand_changes_nothing(api: ApiKit) -> None:
    """Test that a fulfil the book refuses (its note is too long) leaves the approved request
    as it was, so it can still be started."""
    approved_vm(api)
    long = api.request("POST", "/api/v1/requests/1/fulfil", {"note": "x" * 2001}, token=OPERATOR)
    assert long.status == 400
    assert api.request("GET", "/api/v1/requests/1").body["state"] == "approved"
    started = api.request("POST", "/api/v1/requests/1/start", token=OPERATOR)
    assert (started.status, started.body["state"]) == (200, "fulfilling")
    assert [to for to, _, _ in timeline(api, 1)] == ["submitted", "approved", "fulfilling"]


def test_by_hand_only_from_the_states_that_allow_it(api: ApiKit) -> None:
    """Test 409 for a submitted request (not approved yet), for a second start and for a
    finished request, and 404 for a request that does not exist."""
    submit(api)
    for op in BY_HAND:
        answer = api.request("POST", f"/api/v1/requests/1/{op}", {"note": "n"}, token=OPERATOR)
        assert answer.status == 409, (op, answer.body)
    approved_vm(api)
    assert api.request("POST", "/api/v1/requests/2/start", token=OPERATOR).status == 200
    assert api.request("POST", "/api/v1/requests/2/start", token=OPERATOR).status == 409
    assert api.request("POST", "/api/v1/requests/2/fulfil", token=OPERATOR).status == 200
    for op in BY_HAND:
        answer = api.request("POST", f"/api/v1/requests/2/{op}", {"note": "n"}, token=OPERATOR)
        assert answer.status == 409, (op, answer.body)
        missing = api.request("POST", f"/api/v1/requests/7/{op}", {"note": "n"}, token=OPERATOR)
        assert missing.status == 404, (op, missing.body)
    assert timeline(api, 2)[-1] == ("fulfilled", "olga", "")


def test_an_item_without_approval_is_fulfilled_by_its_runbook(api: ApiKit) -> None:
    """Test that reset-password needs nobody (approved by "catalog" as it is submitted) and
    that its runbook really runs with the request's input and fulfils it."""
    made = submit(api, {"item": "reset-password", "input": {"user": "bob"}})
    assert (made["state"], made["decided_by"], made["run_id"]) == ("fulfilling", "catalog", 1)
    done = settled(api, 1)
    assert (done["state"], done["reason"]) == ("fulfilled", "")
    assert api.noted() == ["reset bob"]
    run = api.finished(1)
    assert (run["state"], run["rule"], run["key"], run["target"]) == (
        "succeeded",
        "request:reset-password",
        "1",
        "reset-password",
    )
    assert timeline(api, 1) == [
        ("submitted", "olga", "via api"),
        ("approved", "catalog", "no approval needed"),
        ("fulfilling", "runbook:reset-password", "run 1 started"),
        ("fulfilled", "runbook:reset-password", ""),
    ]
    listed = api.request("GET", "/api/v1/requests?state=fulfilled").body["requests"]
    assert [r["id"] for r in listed] == [1]


def test_a_request_a_run_fulfils_ends_with_the_run(api: ApiKit) -> None:
    """Test that while a run fulfils a request (its runbook awaits approval), start, fulfil
    and fail by hand are 409s, and that the run's end decides: approved and succeeded it
    fulfils the request, rejected it fails it with the reason."""
    for _ in range(2):
        made = submit(api, {"item": "restart-app", "input": {"app": "web"}})
        api.until(
            f"/api/v1/runs/{made['run_id']}",
            lambda r: r["state"] == "awaiting_approval",
            "the fulfilment run to await approval",
        )
    assert made["run_id"] == 2
    for op in BY_HAND:
        answer = api.request("POST", f"/api/v1/requests/1/{op}", {"note": "n"}, token=OPERATOR)
        assert (answer.status, answer.body) == (
            409,
            {"error": "request 1 is being fulfilled by run 1; it ends with the run"},
        ), op
    api.request("POST", "/api/v1/runs/1/approve", token=OPERATOR)
    assert settled(api, 1)["state"] == "fulfilled"
    assert timeline(api, 1)[-1] == ("fulfilled", "runbook:gated", "")
    api.request("POST", "/api/v1/runs/2/reject", {"note": "not today"}, token=ADMIN)
    failed = settled(api, 2)
    assert (failed["state"], failed["reason"]) == (
        "failed",
        "run 2 rejected: rejected by adam: not today",
    )


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"item": "new-vm", "input": {"size": 0, "colour": "red", "os": "debain"}}, 400,
         "new-vm: size: must be a whole number from 1 to 64; os: must be one of debian, alpine "
         "(did you mean 'debian'?); unknown field 'colour'"),
        ({"item": "new-vm"}, 400, "new-vm: size: required"),
        ({"item": "new-vm", "input": [4]}, 400,
         'input must be an object of field values, like {"size": 4}'),
        ({"input": {}}, 400, "item is required: the name of a catalog item, like new-vm"),
        ({"item": "../x"}, 400, "item is required: the name of a catalog item, like new-vm"),
        ({"item": "old-vm"}, 404,
         "no catalog item old-vm; the catalog has: new-vm, reset-password, restart-app"),
        ({"item": "new-vm", "inputs": {}}, 400, "unknown field(s): inputs; known: item, input"),
    ],
)  # fmt: skip
def test_submissions_are_checked(
    api: ApiKit, body: dict[str, Any], status: int, message: str
) -> None:
    """Test that bad submissions are refused with a sentence saying what is wrong."""
    answer = api.request("POST", "/api/v1/requests", body, token=OPERATOR)
    assert (answer.status, answer.body) == (status, {"error": message})
    assert api.request("GET", "/api/v1/requests").body == {"requests": []}


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/v1/requests?state=done", 400, "state must be one of submitted, approved, "
         "rejected, fulfilling, fulfilled, failed, closed"),
        ("/api/v1/requests?item=x", 400, "unknown parameter(s): item; known: state, limit, offset"),
        ("/api/v1/requests/7", 404, "no request 7"),
        ("/api/v1/requests/x", 400, "a request id is a whole number, like 42"),
    ],
)  # fmt: skip
def test_reads_that_are_refused(api: ApiKit, path: str, status: int, message: str) -> None:
    """Test the list query and the path id checks."""
    answer = api.request("GET", path)
    assert (answer.status, answer.body) == (status, {"error": message})
