"""The catalog and service-request endpoints against a real ApiServer and the stand-in request
desk (tests/standin_desks.py: the real RequestBook and catalog)."""

from __future__ import annotations

from typing import Any

import pytest

from apikit import TOKENS, ApiKit

OPERATOR, ADMIN = TOKENS["operator"], TOKENS["admin"]
VM = {"item": "new-vm", "input": {"size": 4}}

CHANGES = [
    ("POST", "/api/v1/requests", VM),
    ("POST", "/api/v1/requests/1/approve", {}),
    ("POST", "/api/v1/requests/1/reject", {"note": "no"}),
    ("POST", "/api/v1/requests/1/close", {}),
]


def submit(api: ApiKit, body: dict[str, Any] = VM) -> dict[str, Any]:
    """Submit through the API as the operator; the request's view."""
    answer = api.request("POST", "/api/v1/requests", body, token=OPERATOR)
    assert answer.status == 201, answer.body
    return dict(answer.body)


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
    assert [(i["name"], i["approval"], i["sla"]) for i in items] == [
        ("new-vm", "admin", 86400.0),
        ("reset-password", None, None),
    ]
    assert items[0]["fields"][1] == {
        "name": "os", "type": "enum", "required": False, "description": "", "default": "debian",
        "values": ["debian", "alpine"],
    }  # fmt: skip


def test_a_request_through_approval_fulfilment_and_close(api: ApiKit) -> None:
    """Test submit (defaults filled), an approval refused for a low token role (403), the
    admin's approval, a reject the state forbids (409), close, and the timeline."""
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
    api.requests.fulfil(1)
    done = api.request("POST", "/api/v1/requests/1/close", {"note": "thanks"}, token=OPERATOR)
    assert (done.status, done.body["state"]) == (200, "closed")
    timeline = api.request("GET", "/api/v1/requests/1").body["timeline"]
    assert [(e["to"], e["actor"], e["note"]) for e in timeline] == [
        ("submitted", "olga", "via api"),
        ("approved", "adam", "ok"),
        ("fulfilling", "tocsin", "fulfilment started by hand"),
        ("fulfilled", "tocsin", ""),
        ("closed", "olga", "thanks"),
    ]


def test_an_item_without_approval_is_approved_by_the_catalog(api: ApiKit) -> None:
    """Test that reset-password needs nobody: approved by "catalog" as it is submitted."""
    made = submit(api, {"item": "reset-password", "input": {"user": "bob"}})
    assert (made["state"], made["decided_by"]) == ("approved", "catalog")
    listed = api.request("GET", "/api/v1/requests?state=approved").body["requests"]
    assert [r["id"] for r in listed] == [1]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"item": "new-vm", "input": {"size": 0, "colour": "red", "os": "debain"}}, 400,
         "size: must be a whole number from 1 to 64; os: must be one of debian, alpine "
         "(did you mean 'debian'?); unknown field 'colour'"),
        ({"item": "new-vm"}, 400, "size: required"),
        ({"item": "new-vm", "input": [4]}, 400,
         'input must be an object of field values, like {"size": 4}'),
        ({"input": {}}, 400, "item is required: the name of a catalog item, like new-vm"),
        ({"item": "../x"}, 400, "item is required: the name of a catalog item, like new-vm"),
        ({"item": "old-vm"}, 404, "no catalog item old-vm"),
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
