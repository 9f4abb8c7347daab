"""`/api/v1/problems` and `/api/v1/known-errors`: the causes behind incidents, worked by
operators, and the known errors whose workaround new matching incidents get."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from aiohttp import web

from tocsin.api.auth import Gate, caller
from tocsin.api.handlers import MAX_ID, Work, handler, list_query, record_id
from tocsin.api.incidents import MAX_NAME, MAX_TEXT, IncidentError
from tocsin.api.replies import RequestError, text_field
from tocsin.mute.matchers import parse_matchers
from tocsin.records.problems import ProblemState
from tocsin.tokens import Role
from tocsin.yamlsrc import Mark, SourceError

__all__ = [
    "ACTIONS",
    "KNOWN_ERROR_NAME",
    "MAX_LINKS",
    "MAX_TITLE",
    "PROBLEM_STATES",
    "ProblemDesk",
    "add_problem_routes",
]

PROBLEM_STATES = tuple(str(s) for s in ProblemState)
# POST /api/v1/problems/{id}/<action> -> the state ProblemDesk.transition is asked for.
ACTIONS: Mapping[str, str] = {
    "investigate": "investigating",
    "known-error": "known_error",
    "resolve": "resolved",
    "close": "closed",
    "reopen": "reopen",
}
MAX_TITLE = 500
MAX_LINKS = 1000  # incidents linked when a problem is created
# Known-error names go into URLs (DELETE /api/v1/known-errors/{name}).
KNOWN_ERROR_NAME = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME = re.compile(KNOWN_ERROR_NAME)


class ProblemDesk(Protocol):
    """What the daemon offers the API about problems and known errors; every change is saved
    first. Refusals are IncidentError: 404 (no such problem, incident or known error), 409
    (the state does not allow it; already linked; a name in use; a known error from the
    config), 503 (not saved)."""

    async def get(self, problem_id: int) -> dict[str, Any] | None:
        """One problem view, with its "timeline" and linked "incidents"."""

    async def create(
        self, *, title: str, service: str, category: str, actor: str, incidents: list[int]
    ) -> dict[str, Any]:
        """Open a problem by hand, linked to these incidents."""

    async def transition(
        self, problem_id: int, to: str, *, actor: str, note: str = ""
    ) -> dict[str, Any]:
        """Move to investigating | known_error | resolved | closed, or `reopen`."""

    async def update(
        self,
        problem_id: int,
        *,
        actor: str,
        root_cause: str | None,
        workaround: str | None,
        owner: str | None,
        title: str | None,
    ) -> dict[str, Any]:
        """Change the fields given (None: as it is; "" clears root_cause, workaround, owner)."""

    async def link(self, problem_id: int, incident_id: int, *, actor: str) -> dict[str, Any]:
        """Link an incident to the problem."""

    async def known_errors(self) -> list[dict[str, Any]]:
        """Every known error, from the config and the API: name, source, matchers, workaround,
        root_cause, problem."""

    async def add_known_error(
        self,
        *,
        name: str,
        matchers: list[str],
        workaround: str,
        root_cause: str,
        problem: int | None,
        actor: str,
    ) -> dict[str, Any]:
        """Record a known error; `matchers` are canonical matcher texts, already checked."""

    async def remove_known_error(self, name: str, *, actor: str) -> dict[str, Any]:
        """Remove a known error made through the API."""

    # Last: in the class body, `list` names this method from here on.
    async def list(self, *, state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        """Problem views, newest first."""


def _whole(value: Any, what: str) -> int:
    """An id in a body: a whole number from 1 (JSON's 42.0 is one too), else RequestError."""
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole or not 0 < value < MAX_ID:
        raise RequestError(f"{what} must be a whole number from 1, like 42")
    return int(value)


def _incidents(body: dict[str, Any]) -> list[int]:
    """The incidents to link when creating a problem: distinct ids, none by default."""
    given = body.get("incidents", [])
    if not isinstance(given, list):
        raise RequestError("incidents must be a list of incident ids, like [12, 15]")
    if len(given) > MAX_LINKS:
        raise RequestError(f"incidents may list at most {MAX_LINKS} ids, not {len(given)}")
    ids = [_whole(value, "each of incidents") for value in given]
    if len(set(ids)) != len(ids):
        raise RequestError("incidents lists an id twice")
    return ids


def _matchers(body: dict[str, Any]) -> list[str]:
    """Known-error matchers as canonical texts; they must not match every incident."""
    if "matchers" not in body:
        raise RequestError('matchers is required, like ["service=db", "rule=~disk-.*"]')
    try:
        matchers = parse_matchers(body["matchers"], Mark("request", 1, 1), what="matchers")
    except SourceError as exc:
        raise RequestError(exc.message) from None
    reason = matchers.unselective_reason()
    if reason is not None:
        raise RequestError(f"a known error {reason}")
    return [str(m) for m in matchers]


def add_problem_routes(app: web.Application, gate: Gate, desk: ProblemDesk) -> None:
    """Register the problem and known-error endpoints: reads for viewers, changes for
    operators."""

    async def listing(request: web.Request, _body: dict[str, Any]) -> Any:
        query = list_query(request.query, PROBLEM_STATES)
        found = await desk.list(state=query.state, limit=query.limit, offset=query.offset)
        return {"problems": found}

    async def one(request: web.Request, _body: dict[str, Any]) -> Any:
        problem_id = record_id(request, "problem")
        problem = await desk.get(problem_id)
        if problem is None:
            raise IncidentError(404, f"no problem {problem_id}")
        return problem

    async def create(request: web.Request, body: dict[str, Any]) -> Any:
        title = text_field(body, "title", least=1, most=MAX_TITLE)
        if title is None:
            raise RequestError("title is required")
        return await desk.create(
            title=title,
            service=text_field(body, "service", most=MAX_NAME) or "",
            category=text_field(body, "category", most=MAX_NAME) or "",
            actor=caller(request).principal,
            incidents=_incidents(body),
        )

    def transition(to: str) -> Work:
        async def work(request: web.Request, body: dict[str, Any]) -> Any:
            note = text_field(body, "note", most=MAX_TEXT) or ""
            problem_id = record_id(request, "problem")
            return await desk.transition(problem_id, to, actor=caller(request).principal, note=note)

        return work

    async def update(request: web.Request, body: dict[str, Any]) -> Any:
        if not body:
            raise RequestError("give root_cause, workaround, owner or title")
        owner = text_field(body, "owner", least=1, most=MAX_NAME, null=True)
        return await desk.update(
            record_id(request, "problem"),
            actor=caller(request).principal,
            root_cause=text_field(body, "root_cause", most=MAX_TEXT),
            workaround=text_field(body, "workaround", most=MAX_TEXT),
            owner="" if owner is None and "owner" in body else owner,
            title=text_field(body, "title", least=1, most=MAX_TITLE),
        )

    async def link(request: web.Request, body: dict[str, Any]) -> Any:
        if "incident" not in body:
            raise RequestError("incident is required: the id of the incident to link")
        incident = _whole(body["incident"], "incident")
        problem_id = record_id(request, "problem")
        return await desk.link(problem_id, incident, actor=caller(request).principal)

    async def known_errors(_request: web.Request, _body: dict[str, Any]) -> Any:
        return {"known_errors": await desk.known_errors()}

    async def add_known_error(request: web.Request, body: dict[str, Any]) -> Any:
        name = text_field(body, "name", least=1, most=64)
        if name is None or not _NAME.fullmatch(name):
            raise RequestError(
                "name is required: 1 to 64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        workaround = text_field(body, "workaround", least=1, most=MAX_TEXT)
        if workaround is None:
            raise RequestError("workaround is required: what to do until the cause is fixed")
        problem = body.get("problem")
        return await desk.add_known_error(
            name=name,
            matchers=_matchers(body),
            workaround=workaround,
            root_cause=text_field(body, "root_cause", most=MAX_TEXT) or "",
            problem=None if problem is None else _whole(problem, "problem"),
            actor=caller(request).principal,
        )

    async def remove_known_error(request: web.Request, _body: dict[str, Any]) -> Any:
        name = request.match_info["name"]
        return await desk.remove_known_error(name, actor=caller(request).principal)

    problem = "/api/v1/problems/{id}"
    gate.route(app, "GET", "/api/v1/problems", handler(listing), Role.VIEWER)
    new = ("title", "service", "category", "incidents")
    gate.route(
        app, "POST", "/api/v1/problems", handler(create, fields=new, status=201), Role.OPERATOR
    )
    gate.route(app, "GET", problem, handler(one), Role.VIEWER)
    changes = ("root_cause", "workaround", "owner", "title")
    gate.route(app, "PATCH", problem, handler(update, fields=changes), Role.OPERATOR)
    for action, to in ACTIONS.items():
        move = handler(transition(to), fields=("note",), optional=True)
        gate.route(app, "POST", f"{problem}/{action}", move, Role.OPERATOR)
    linking = handler(link, fields=("incident",))
    gate.route(app, "POST", f"{problem}/incidents", linking, Role.OPERATOR)
    gate.route(app, "GET", "/api/v1/known-errors", handler(known_errors), Role.VIEWER)
    made = ("name", "matchers", "workaround", "root_cause", "problem")
    gate.route(
        app,
        "POST",
        "/api/v1/known-errors",
        handler(add_known_error, fields=made, status=201),
        Role.OPERATOR,
    )
    gate.route(
        app,
        "DELETE",
        "/api/v1/known-errors/{name}",
        handler(remove_known_error),
        Role.OPERATOR,
    )
