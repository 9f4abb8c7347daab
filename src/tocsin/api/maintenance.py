"""`/api/v1/maintenance`: the windows in force, and one-off windows made and ended by API."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from tocsin.api.auth import Gate, author, caller
from tocsin.api.replies import error, read_json
from tocsin.api.silences import parse_time
from tocsin.mute import format_time
from tocsin.mute.matchers import Matchers, parse_matchers
from tocsin.mute.oneoff import OneOffWindow, WindowError
from tocsin.mute.schedule import MaintenanceWindow
from tocsin.rules.schema import parse_duration
from tocsin.store.base import StoreError
from tocsin.tokens import Role
from tocsin.yamlsrc import Mark, SourceError

__all__ = ["MaintenanceDesk", "add_maintenance_routes"]

_FIELDS = (
    "name",
    "matchers",
    "start",
    "end",
    "duration",
    "created_by",
    "comment",
    "remind_before",
)


class MaintenanceDesk(Protocol):
    """What the daemon offers the API about maintenance windows."""

    def now(self) -> float:
        """The daemon's time (a virtual one under `tocsin test`)."""

    def list(self) -> tuple[tuple[MaintenanceWindow, ...], list[OneOffWindow]]:
        """The configured windows and the API-made ones."""

    async def add(
        self,
        *,
        name: str,
        matchers: Matchers,
        start: float,
        end: float,
        created_by: str,
        comment: str,
        remind_before: float | None,
    ) -> OneOffWindow:
        """Make a one-off window, saved before returning."""

    async def end(self, name: str) -> OneOffWindow:
        """End an API-made window now, saved before returning."""


def _iso(when: float) -> str:
    return format_time(when)


def _configured_json(window: MaintenanceWindow, now: float) -> dict[str, Any]:
    return {
        "name": window.name,
        "source": "config",
        "kind": "one-off" if window.start is not None else "recurring",
        "matchers": [str(m) for m in window.matchers],
        "where": str(window.where) if window.where is not None else None,
        "active": window.active(now),
    }


def _made_json(window: OneOffWindow, now: float) -> dict[str, Any]:
    body = window.to_dict()
    for key in ("start", "end", "created_at", "ended_early_at"):
        if body[key] is not None:
            body[key] = _iso(body[key])
    body.update(
        source="api", kind="one-off", state=window.state(now), active=window.state(now) == "active"
    )
    return body


def _parse(body: Any, now: float, principal: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise WindowError("send a JSON object")
    unknown = sorted(str(k) for k in body if k not in _FIELDS)
    if unknown:
        raise WindowError(f"unknown field(s): {', '.join(unknown)}; known: {', '.join(_FIELDS)}")
    here = Mark("request", 1, 1)
    try:
        matchers = parse_matchers(body.get("matchers"), here)
        start = parse_time(body["start"], "start") if "start" in body else now
        if ("end" in body) == ("duration" in body):
            raise WindowError("give exactly one of end and duration")
        end = (
            start + parse_duration(body["duration"], here, "duration")
            if "duration" in body
            else parse_time(body["end"], "end")
        )
        remind = (
            parse_duration(body["remind_before"], here, "remind_before")
            if body.get("remind_before") is not None
            else None
        )
    except SourceError as exc:
        raise WindowError(exc.message) from None
    except ValueError as exc:
        raise WindowError(str(exc)) from None
    for key in ("name", "comment"):
        if not isinstance(body.get(key), str):
            raise WindowError(f"{key} must be text")
    given = body.get("created_by", principal)
    if not isinstance(given, str):
        raise WindowError("created_by must be text")
    return {
        "name": body["name"],
        "matchers": matchers,
        "start": start,
        "end": end,
        "created_by": author(principal, given),
        "comment": body["comment"],
        "remind_before": remind,
    }


def add_maintenance_routes(app: web.Application, gate: Gate, desk: MaintenanceDesk) -> None:
    """Register the maintenance endpoints; POST and DELETE need the operator role."""

    async def listing(_request: web.Request) -> web.Response:
        now = desk.now()
        configured, made = desk.list()
        windows = [_configured_json(w, now) for w in configured] + [
            _made_json(w, now) for w in made
        ]
        return web.json_response({"windows": windows})

    async def create(request: web.Request) -> web.StreamResponse:
        body, problem = await read_json(request)
        if problem is not None:
            return problem
        try:
            window = await desk.add(**_parse(body, desk.now(), caller(request).principal))
        except WindowError as exc:
            return error(400, str(exc))
        except StoreError as exc:
            return error(503, f"the window was not saved: {exc.reason}")
        return web.json_response(_made_json(window, desk.now()), status=201)

    async def end(request: web.Request) -> web.StreamResponse:
        try:
            window = await desk.end(request.match_info["name"])
        except WindowError as exc:
            return error(404 if "no API-made" in str(exc) else 409, str(exc))
        except StoreError as exc:
            return error(503, f"the window was not ended: {exc.reason}")
        return web.json_response(_made_json(window, desk.now()))

    gate.route(app, "GET", "/api/v1/maintenance", listing, Role.VIEWER)
    gate.route(app, "POST", "/api/v1/maintenance", create, Role.OPERATOR)
    gate.route(app, "DELETE", "/api/v1/maintenance/{name}", end, Role.OPERATOR)
