"""`/api/v1/incidents`: list and read incidents and their timelines; operators work them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiohttp import web
from multidict import MultiMapping

from tocsin.api.auth import Gate, Handler, caller
from tocsin.api.reader import StoreReader
from tocsin.api.replies import RequestError, error, known_fields, read_json, text_field
from tocsin.model import OPEN_STATES, Incident, IncidentState
from tocsin.records.priority import PRIORITIES, RATINGS
from tocsin.records.views import incident_json, iso_time
from tocsin.store.base import HistoryEntry, StoreError
from tocsin.tokens import Role

__all__ = [
    "ACTIONS",
    "IncidentDesk",
    "IncidentError",
    "add_incident_routes",
    "timeline_json",
]

# POST /api/v1/incidents/{id}/<action> -> the state IncidentDesk.transition is asked for.
ACTIONS: Mapping[str, str] = {
    "acknowledge": IncidentState.ACKNOWLEDGED,
    "start": IncidentState.IN_PROGRESS,
    "hold": IncidentState.ON_HOLD,
    "resolve": IncidentState.RESOLVED,
    "close": IncidentState.CLOSED,
    "reopen": "reopen",
}
_STATES = tuple(s.value for s in IncidentState)
_OPEN = tuple(s for s in _STATES if s in OPEN_STATES)
_QUERY = ("state", "priority", "service", "assignee", "group", "limit", "offset")
_MAX_LIMIT = 1000
_MAX_ID = 2**63  # SQLite integers are signed 64-bit
MAX_TEXT = 10_000  # comments and notes
MAX_NAME = 200  # assignees and groups


class IncidentError(Exception):
    """The desk refused a change: `status` 400 (invalid), 404 (no incident), 409 (the state
    does not allow it) or 503 (not saved)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class IncidentDesk(Protocol):
    """What the daemon offers the API for working incidents; every change is saved first."""

    async def transition(
        self, incident_id: int, to: str, *, actor: str, note: str = ""
    ) -> Incident:
        """Move to acknowledged | in_progress | on_hold | resolved | closed, or `reopen`."""

    async def assign(
        self,
        incident_id: int,
        *,
        assignee: str | None,
        group: str | None,
        actor: str,
        note: str = "",
    ) -> Incident:
        """Set the assignee and/or group: None leaves one as it is, "" clears it."""

    async def comment(self, incident_id: int, *, text: str, actor: str) -> Incident:
        """Add a comment to the timeline."""

    async def rate(
        self,
        incident_id: int,
        *,
        impact: str | None,
        urgency: str | None,
        actor: str,
        note: str = "",
    ) -> Incident:
        """Change impact and/or urgency (None: as it is); the priority follows the matrix."""

    def oncall(self, at: float) -> list[dict[str, Any]]:
        """Who is on call at `at` in every schedule: schedule, on_call, user, until."""


def timeline_json(entry: HistoryEntry) -> dict[str, Any]:
    """The API form of one timeline entry."""
    return {
        "time": iso_time(entry.time),
        "kind": entry.kind,
        "from": entry.from_state,
        "to": entry.to_state,
        "actor": entry.actor,
        "note": entry.note,
    }


def _incident_id(request: web.Request) -> int:
    """The path's {id}: RequestError unless a whole number, IncidentError(404) if never used."""
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit()):
        raise RequestError("an incident id is a whole number, like 42")
    if not 0 < int(text) < _MAX_ID:
        raise IncidentError(404, f"no incident {text}")
    return int(text)


def _name(body: dict[str, Any], key: str) -> str | None:
    """An assignee or group: None when absent (unchanged), "" when null (cleared)."""
    value = text_field(body, key, least=1, most=MAX_NAME, null=True)
    return "" if value is None and key in body else value


def _listing_filters(query: MultiMapping[str]) -> dict[str, Any]:
    """Turn the list query into Store.list_incidents arguments; RequestError explains problems."""
    keys = [key for key, _ in query.items()]
    unknown = sorted({k for k in keys if k not in _QUERY})
    if unknown:
        raise RequestError(
            f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(_QUERY)}"
        )
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise RequestError(
            f"give {', '.join(repeated)} once (a comma-separated list where allowed)"
        )
    states: tuple[str, ...] | None = None
    wanted = query.get("state", "all").split(",")
    if "all" not in wanted:
        states = tuple(dict.fromkeys(s for w in wanted for s in (_OPEN if w == "open" else (w,))))
        if not set(states) <= set(_STATES):
            raise RequestError(f"state must be all, open or a list of {', '.join(_STATES)}")
    priorities = tuple(query["priority"].split(",")) if "priority" in query else None
    if priorities is not None and not set(priorities) <= set(PRIORITIES):
        raise RequestError(f"priority must be a list of {', '.join(PRIORITIES)}")
    try:
        limit = int(query.get("limit", "100"))
        offset = int(query.get("offset", "0"))
    except ValueError:
        raise RequestError("limit and offset must be whole numbers") from None
    if not 1 <= limit <= _MAX_LIMIT or not 0 <= offset < _MAX_ID:
        raise RequestError(f"limit must be 1 to {_MAX_LIMIT} and offset 0 or more")
    return {
        "states": states,
        "priorities": priorities,
        "service": query.get("service"),
        "assignee": query.get("assignee"),
        "group": query.get("group"),
        "limit": limit,
        "offset": offset,
    }


Change = Callable[[int, dict[str, Any], str], Awaitable[Incident]]


def add_incident_routes(
    app: web.Application, gate: Gate, reader: StoreReader, desk: IncidentDesk | None
) -> None:
    """Register the incident reads, and the changes when there is a desk to make them."""

    async def listing(request: web.Request) -> web.Response:
        try:
            filters = _listing_filters(request.query)
            found = await reader.run(lambda s: s.list_incidents(**filters))
        except RequestError as exc:
            return error(400, str(exc))
        except StoreError as exc:
            return error(503, exc.reason)
        return web.json_response({"incidents": [incident_json(i) for i in found]})

    async def read(request: web.Request, *, whole: bool) -> web.Response:
        try:
            incident_id = _incident_id(request)
        except RequestError as exc:
            return error(400, str(exc))
        except IncidentError as exc:
            return error(exc.status, exc.message)
        try:
            incident = await reader.run(lambda s: s.get_incident(incident_id))
            history = await reader.run(lambda s: s.incident_history(incident_id))
        except StoreError as exc:
            return error(503, exc.reason)
        if incident is None:
            return error(404, f"no incident {incident_id}")
        timeline = [timeline_json(h) for h in history]
        if not whole:
            return web.json_response({"timeline": timeline})
        return web.json_response({**incident_json(incident), "timeline": timeline})

    async def one(request: web.Request) -> web.Response:
        return await read(request, whole=True)

    async def timeline(request: web.Request) -> web.Response:
        return await read(request, whole=False)

    gate.route(app, "GET", "/api/v1/incidents", listing, Role.VIEWER)
    gate.route(app, "GET", "/api/v1/incidents/{id}", one, Role.VIEWER)
    gate.route(app, "GET", "/api/v1/incidents/{id}/timeline", timeline, Role.VIEWER)
    if desk is None:
        return

    def change(fields: tuple[str, ...], make: Change, *, created: bool = False) -> Handler:
        async def handle(request: web.Request) -> web.Response:
            body, problem = await read_json(request, empty={})
            if problem is not None:
                return problem
            try:
                incident_id = _incident_id(request)
                incident = await make(
                    incident_id, known_fields(body, fields), caller(request).principal
                )
            except RequestError as exc:
                return error(400, str(exc))
            except IncidentError as exc:
                return error(exc.status, exc.message)
            except StoreError as exc:
                return error(503, f"the change was not saved: {exc.reason}")
            return web.json_response(incident_json(incident), status=201 if created else 200)

        return handle

    def transition(to: str) -> Change:
        async def make(incident_id: int, body: dict[str, Any], actor: str) -> Incident:
            note = text_field(body, "note", most=MAX_TEXT) or ""
            return await desk.transition(incident_id, to, actor=actor, note=note)

        return make

    async def assign(incident_id: int, body: dict[str, Any], actor: str) -> Incident:
        if "assignee" not in body and "group" not in body:
            raise RequestError("give assignee, group or both (null clears one)")
        assignee, group = _name(body, "assignee"), _name(body, "group")
        note = text_field(body, "note", most=MAX_TEXT) or ""
        return await desk.assign(
            incident_id, assignee=assignee, group=group, actor=actor, note=note
        )

    async def comment(incident_id: int, body: dict[str, Any], actor: str) -> Incident:
        text = text_field(body, "text", least=1, most=MAX_TEXT)
        if text is None:
            raise RequestError("text is required")
        return await desk.comment(incident_id, text=text, actor=actor)

    async def rate(incident_id: int, body: dict[str, Any], actor: str) -> Incident:
        if "impact" not in body and "urgency" not in body:
            raise RequestError("give impact, urgency or both")
        ratings = {key: text_field(body, key, most=MAX_NAME) for key in ("impact", "urgency")}
        wrong = [k for k, v in ratings.items() if v is not None and v not in RATINGS]
        if wrong:
            raise RequestError(f"{' and '.join(wrong)} must be one of {', '.join(RATINGS)}")
        note = text_field(body, "note", most=MAX_TEXT) or ""
        return await desk.rate(
            incident_id,
            impact=ratings["impact"],
            urgency=ratings["urgency"],
            actor=actor,
            note=note,
        )

    for action, to in ACTIONS.items():
        gate.route(
            app,
            "POST",
            f"/api/v1/incidents/{{id}}/{action}",
            change(("note",), transition(to)),
            Role.OPERATOR,
        )
    assign_fields = ("assignee", "group", "note")
    gate.route(
        app, "POST", "/api/v1/incidents/{id}/assign", change(assign_fields, assign), Role.OPERATOR
    )
    gate.route(
        app,
        "POST",
        "/api/v1/incidents/{id}/comments",
        change(("text",), comment, created=True),
        Role.OPERATOR,
    )
    rate_fields = ("impact", "urgency", "note")
    gate.route(app, "PATCH", "/api/v1/incidents/{id}", change(rate_fields, rate), Role.OPERATOR)
