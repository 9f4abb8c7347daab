"""`/api/v1/catalog` and `/api/v1/requests`: what people may ask for, their service requests,
and the approvals the catalog asks of people with a high enough token role."""

from __future__ import annotations

import re
from typing import Any, Protocol

from aiohttp import web

from tocsin.api.auth import Gate, caller
from tocsin.api.handlers import handler, list_query, record_id
from tocsin.api.incidents import MAX_TEXT, IncidentError
from tocsin.api.replies import RequestError, text_field
from tocsin.records.requests import RequestState
from tocsin.tokens import Role

__all__ = [
    "ITEM_NAME",
    "REQUEST_ACTIONS",
    "REQUEST_STATES",
    "RequestDesk",
    "add_request_routes",
]

REQUEST_STATES = tuple(str(s) for s in RequestState)
# POST /api/v1/requests/{id}/<action>; start, fulfil and fail are for people fulfilling by hand.
REQUEST_ACTIONS = ("approve", "reject", "start", "fulfil", "fail", "close")
# Catalog item names, as records.catalog allows them.
ITEM_NAME = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ITEM = re.compile(ITEM_NAME)


class RequestDesk(Protocol):
    """What the daemon offers the API about the catalog and service requests; every change is
    saved first. Views are ServiceRequest.to_dict with times in ISO 8601.

    Refusals are IncidentError: 400 (the input does not fit the item: the RequestInputError
    text), 403 (the caller's role is below what the item's approval needs), 404 (no such item
    or request), 409 (the state does not allow it), 503 (not saved).
    """

    async def catalog(self) -> list[dict[str, Any]]:
        """Every catalog item (CatalogItem.to_dict), by name."""

    async def get(self, request_id: int) -> dict[str, Any] | None:
        """One request view, with its "timeline" (TimelineEntry, oldest first)."""

    async def submit(self, *, item: str, data: dict[str, Any], actor: str) -> dict[str, Any]:
        """Open a request for a catalog item with this input (checked against its schema)."""

    async def approve(
        self, request_id: int, *, actor: str, role: Role, note: str = ""
    ) -> dict[str, Any]:
        """Approve a submitted request; `role` is the caller's token role."""

    async def reject(
        self, request_id: int, *, actor: str, role: Role, note: str = ""
    ) -> dict[str, Any]:
        """Reject a submitted request; `role` is the caller's token role."""

    async def by_hand(
        self, request_id: int, op: str, *, actor: str, note: str = ""
    ) -> dict[str, Any]:
        """Start (`op` "start"), fulfil or fail an approved request by hand: for items with no
        runbook; 409 while a run fulfils it. Failing needs a note that says why."""

    async def close(self, request_id: int, *, actor: str, note: str = "") -> dict[str, Any]:
        """Close a rejected, fulfilled or failed request."""

    # Last: in the class body, `list` names this method from here on.
    async def list(self, *, state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        """Request views, newest first."""


def add_request_routes(app: web.Application, gate: Gate, desk: RequestDesk) -> None:
    """Register the catalog and request endpoints: reads for viewers, changes for operators
    (an item's approval may ask more of the approver's token)."""

    async def catalog(_request: web.Request, _body: dict[str, Any]) -> Any:
        return {"items": await desk.catalog()}

    async def listing(request: web.Request, _body: dict[str, Any]) -> Any:
        query = list_query(request.query, REQUEST_STATES)
        found = await desk.list(state=query.state, limit=query.limit, offset=query.offset)
        return {"requests": found}

    async def one(request: web.Request, _body: dict[str, Any]) -> Any:
        request_id = record_id(request, "request")
        found = await desk.get(request_id)
        if found is None:
            raise IncidentError(404, f"no request {request_id}")
        return found

    async def submit(request: web.Request, body: dict[str, Any]) -> Any:
        item = text_field(body, "item", least=1, most=64)
        if item is None or not _ITEM.fullmatch(item):
            raise RequestError("item is required: the name of a catalog item, like new-vm")
        data = body.get("input", {})
        if not isinstance(data, dict):
            raise RequestError('input must be an object of field values, like {"size": 4}')
        return await desk.submit(item=item, data=data, actor=caller(request).principal)

    async def approve(request: web.Request, body: dict[str, Any]) -> Any:
        token = caller(request)
        note = text_field(body, "note", most=MAX_TEXT) or ""
        request_id = record_id(request, "request")
        return await desk.approve(request_id, actor=token.principal, role=token.role, note=note)

    async def reject(request: web.Request, body: dict[str, Any]) -> Any:
        token = caller(request)
        note = text_field(body, "note", most=MAX_TEXT) or ""
        request_id = record_id(request, "request")
        return await desk.reject(request_id, actor=token.principal, role=token.role, note=note)

    def by_hand(op: str) -> Any:
        async def work(request: web.Request, body: dict[str, Any]) -> Any:
            note = text_field(body, "note", most=MAX_TEXT) or ""
            request_id = record_id(request, "request")
            if op == "fail" and not note.strip():
                raise RequestError("note is required: say why the request failed")
            return await desk.by_hand(request_id, op, actor=caller(request).principal, note=note)

        return work

    async def close(request: web.Request, body: dict[str, Any]) -> Any:
        note = text_field(body, "note", most=MAX_TEXT) or ""
        request_id = record_id(request, "request")
        return await desk.close(request_id, actor=caller(request).principal, note=note)

    gate.route(app, "GET", "/api/v1/catalog", handler(catalog), Role.VIEWER)
    gate.route(app, "GET", "/api/v1/requests", handler(listing), Role.VIEWER)
    made = handler(submit, fields=("item", "input"), status=201)
    gate.route(app, "POST", "/api/v1/requests", made, Role.OPERATOR)
    gate.route(app, "GET", "/api/v1/requests/{id}", handler(one), Role.VIEWER)
    works = (approve, reject, by_hand("start"), by_hand("fulfil"), by_hand("fail"), close)
    for action, work in zip(REQUEST_ACTIONS, works, strict=True):
        decide = handler(work, fields=("note",), optional=True)
        gate.route(app, "POST", f"/api/v1/requests/{{id}}/{action}", decide, Role.OPERATOR)
