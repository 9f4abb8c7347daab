"""`/api/v1/access`: temporary role grants asked for, approved, rejected and revoked through
the API, and the audit log that says who did or decided what, and why."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web
from multidict import MultiDict, MultiMapping

from tocsin.api.auth import Gate, caller
from tocsin.api.handlers import MAX_LIMIT, handler, list_query, record_id
from tocsin.api.incidents import MAX_TEXT, IncidentError
from tocsin.api.replies import RequestError, text_field
from tocsin.records.access import AuditAction, GrantState
from tocsin.records.access_policy import ALL_ROLES
from tocsin.tokens import Role

__all__ = [
    "AUDIT_ACTIONS",
    "DURATION",
    "GRANT_STATES",
    "MAX_DURATION",
    "MAX_ROLE",
    "MAX_SUBJECT",
    "AccessDesk",
    "add_access_routes",
]

GRANT_STATES = tuple(str(s) for s in GrantState)
AUDIT_ACTIONS = tuple(str(a) for a in AuditAction)
MAX_ROLE = 64  # role names, as records.access_policy allows them
MAX_SUBJECT = 128  # subject names, likewise (the policy says what else a subject must be)
MAX_DURATION = 1e9  # seconds; the policy's max_duration is the real bound
# A duration as text: whole units only, so what the document says is what is accepted.
DURATION = "^[1-9][0-9]{0,5}(s|m|h|d)$"
_DURATION = re.compile(DURATION)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_GRANTS_QUERY = ("state", "subject", "role", "limit", "offset")
_AUDIT_QUERY = ("subject", "role", "action", "since", "until", "limit")


class AccessDesk(Protocol):
    """What the daemon offers the API about access grants; every change is saved (and
    audited) first. Grant views are Grant.to_dict with times in ISO 8601; audit entries are
    AuditEntry.to_dict with `time` in ISO 8601.

    Refusals are IncidentError: 403 (the policy does not let this person approve or reject
    it: audited too), 404 (no such grant), 409 (not pending approval, or its wait ran out),
    503 (not saved).
    """

    async def grants(
        self,
        *,
        state: str | None,
        subject: str | None,
        role: str | None,
        limit: int,
        offset: int,
    ) -> list[dict[str, Any]]:
        """Grant views, current and ended, newest first."""

    async def get(self, grant_id: int) -> dict[str, Any] | None:
        """One grant view."""

    async def request(
        self, *, role: str, subject: str, duration: float | None, actor: str
    ) -> dict[str, Any]:
        """Ask for a grant (duration None: the role's max_duration): {"verdict": allowed |
        denied | needs_approval, "reason", "grant": the grant view, or null when denied}."""

    async def approve(self, grant_id: int, *, actor: str, role: Role) -> dict[str, Any]:
        """Approve a pending grant; `role` is the caller's token role. The grant view."""

    async def reject(
        self, grant_id: int, *, actor: str, role: Role, why: str = ""
    ) -> dict[str, Any]:
        """Reject a pending grant; it ends as denied. The grant view."""

    async def revoke(self, *, role: str, subject: str, actor: str, why: str) -> dict[str, Any]:
        """Remove the subject's grant of `role` (or every one for "*"): {"verdict": allowed |
        denied, "reason", "grants": the grant views it ends}."""

    async def audit(
        self,
        *,
        subject: str | None,
        role: str | None,
        action: str | None,
        since: float | None,
        until: float | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Audit entries that match (since inclusive, until exclusive), newest first."""


def _checked(query: MultiMapping[str], known: Sequence[str]) -> None:
    """Refuse unknown and repeated query parameters, as handlers.list_query does."""
    keys = [key for key, _ in query.items()]
    unknown = sorted({k for k in keys if k not in known})
    if unknown:
        raise RequestError(f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(known)}")
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise RequestError(f"give {', '.join(repeated)} once")


def _name(query: MultiMapping[str], key: str, most: int) -> str | None:
    """A role or subject filter: absent is None; present, it must be 1 to `most` characters."""
    value = query.get(key)
    if value is not None and not 1 <= len(value) <= most:
        raise RequestError(f"{key} must be 1 to {most} characters long, not {len(value)}")
    return value


def _moment(query: MultiMapping[str], key: str) -> float | None:
    """A time filter: epoch seconds, or ISO 8601 with a UTC offset."""
    text = query.get(key)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.timestamp()
    else:
        if math.isfinite(number):
            return number
    raise RequestError(f"{key} must be epoch seconds or ISO 8601 with a UTC offset")


def _duration(body: dict[str, Any]) -> float | None:
    """The duration asked for: like 2h, or seconds; None when not given (or null)."""
    value = body.get("duration")
    if value is None:
        return None
    if isinstance(value, str) and _DURATION.fullmatch(value):
        return float(value[:-1]) * _UNIT[value[-1]]
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and math.isfinite(value) and 0 < value <= MAX_DURATION:
        return float(value)
    raise RequestError(
        f"duration must be like 30m, 2h or 1d, or seconds from 0 to {MAX_DURATION:g} (not 0)"
    )


def _required(body: dict[str, Any], key: str, most: int, what: str) -> str:
    value = text_field(body, key, least=1, most=most)
    if value is None:
        raise RequestError(f"{key} is required: {what}")
    return value


def add_access_routes(app: web.Application, gate: Gate, desk: AccessDesk) -> None:
    """Register the access endpoints: reads for viewers, requests and decisions for operators
    (the access policy may ask more of an approver's token)."""

    async def grants(request: web.Request, _body: dict[str, Any]) -> Any:
        query = request.query
        _checked(query, _GRANTS_QUERY)
        page = list_query(
            MultiDict([(k, v) for k, v in query.items() if k in ("state", "limit", "offset")]),
            GRANT_STATES,
        )
        found = await desk.grants(
            state=page.state,
            subject=_name(query, "subject", MAX_SUBJECT),
            role=_name(query, "role", MAX_ROLE),
            limit=page.limit,
            offset=page.offset,
        )
        return {"grants": found}

    async def one(request: web.Request, _body: dict[str, Any]) -> Any:
        grant_id = record_id(request, "grant")
        grant = await desk.get(grant_id)
        if grant is None:
            raise IncidentError(404, f"no grant {grant_id}")
        return grant

    async def ask(request: web.Request, body: dict[str, Any]) -> Any:
        role = _required(body, "role", MAX_ROLE, "the access role to grant, like db-admin")
        subject = _required(body, "subject", MAX_SUBJECT, "who gets it, like alice")
        duration = _duration(body)
        actor = caller(request).principal
        return await desk.request(role=role, subject=subject, duration=duration, actor=actor)

    async def approve(request: web.Request, _body: dict[str, Any]) -> Any:
        token = caller(request)
        grant_id = record_id(request, "grant")
        return await desk.approve(grant_id, actor=token.principal, role=token.role)

    async def reject(request: web.Request, body: dict[str, Any]) -> Any:
        token = caller(request)
        why = text_field(body, "why", most=MAX_TEXT) or ""
        grant_id = record_id(request, "grant")
        return await desk.reject(grant_id, actor=token.principal, role=token.role, why=why)

    async def revoke(request: web.Request, body: dict[str, Any]) -> Any:
        role = _required(body, "role", MAX_ROLE, f"the access role, or {ALL_ROLES} for all")
        subject = _required(body, "subject", MAX_SUBJECT, "whose grant to remove")
        why = _required(body, "why", MAX_TEXT, "say why, for the audit log")
        actor = caller(request).principal
        return await desk.revoke(role=role, subject=subject, actor=actor, why=why)

    async def audit(request: web.Request, _body: dict[str, Any]) -> Any:
        query = request.query
        _checked(query, _AUDIT_QUERY)
        action = query.get("action")
        if action is not None and action not in AUDIT_ACTIONS:
            raise RequestError(f"action must be one of {', '.join(AUDIT_ACTIONS)}")
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            raise RequestError("limit must be a whole number") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise RequestError(f"limit must be 1 to {MAX_LIMIT}")
        since, until = _moment(query, "since"), _moment(query, "until")
        found = await desk.audit(
            subject=_name(query, "subject", MAX_SUBJECT),
            role=_name(query, "role", MAX_ROLE),
            action=action,
            since=since,
            until=until,
            limit=limit,
        )
        return {"audit": found}

    grant = "/api/v1/access/grants/{id}"
    gate.route(app, "GET", "/api/v1/access/grants", handler(grants), Role.VIEWER)
    gate.route(app, "GET", grant, handler(one), Role.VIEWER)
    asked = handler(ask, fields=("role", "subject", "duration"))
    gate.route(app, "POST", "/api/v1/access/requests", asked, Role.OPERATOR)
    decide = handler(approve, fields=(), optional=True)
    gate.route(app, "POST", f"{grant}/approve", decide, Role.OPERATOR)
    refuse = handler(reject, fields=("why",), optional=True)
    gate.route(app, "POST", f"{grant}/reject", refuse, Role.OPERATOR)
    removed = handler(revoke, fields=("role", "subject", "why"))
    gate.route(app, "POST", "/api/v1/access/revoke", removed, Role.OPERATOR)
    gate.route(app, "GET", "/api/v1/access/audit", handler(audit), Role.VIEWER)
