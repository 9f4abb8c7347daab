"""The OpenAPI document: valid 3.1, every route documented, nothing documented that is not served."""

from __future__ import annotations

import schemathesis

from apikit import ApiKit
from tocsin.api.openapi import OPERATIONS


def served(api: ApiKit) -> set[tuple[str, str]]:
    """(method, path) of every route the aiohttp app serves (HEAD comes with GET)."""
    assert api.server is not None
    return {
        (route.method, route.resource.canonical)
        for route in api.server.app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def test_every_route_is_documented_and_every_documented_one_is_served(api: ApiKit) -> None:
    """Test that the routes of a server with every part equal the documented operations."""
    assert served(api) == set(OPERATIONS)
    document = api.request("GET", "/api/v1/openapi.json").body
    listed = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    assert listed == set(OPERATIONS)


def test_the_document_is_valid_openapi_3_1(api: ApiKit) -> None:
    """Test the served document against the OpenAPI 3.1 schema (schemathesis validates it)."""
    document = api.request("GET", "/api/v1/openapi.json").body
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()


def test_security_follows_the_roles_the_gate_enforces(api: ApiKit) -> None:
    """Test that each operation says which role it needs: open reads need none, changes need
    an operator (with 401 and 403 documented), the config an admin."""
    paths = api.request("GET", "/api/v1/openapi.json").body["paths"]
    assert paths["/api/v1/incidents"]["get"]["security"] == []
    assert paths["/healthz"]["get"]["security"] == []
    ack = paths["/api/v1/incidents/{id}/acknowledge"]["post"]
    assert (ack["security"], ack["x-tocsin-role"]) == ([{"bearer": []}], "operator")
    assert {"401", "403"} <= set(ack["responses"])
    assert paths["/api/v1/config"]["get"]["x-tocsin-role"] == "admin"
    assert paths["/api/v1/silences"]["post"]["x-tocsin-role"] == "operator"
    for path, operations in paths.items():
        for method, operation in operations.items():
            needs_token = bool(operation["security"])
            assert needs_token == ("401" in operation["responses"]), (method, path)
            if needs_token:
                assert (
                    api.request(
                        method.upper(), path.replace("{id}", "1").replace("{name}", "n")
                    ).status
                    == 401
                )
