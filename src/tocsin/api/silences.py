"""`/api/v1/silences`: list, create and expire silences; changes need a token."""

from __future__ import annotations

import datetime
from typing import Any, Protocol

from aiohttp import web

from tocsin.api.auth import Gate, author, caller
from tocsin.api.replies import error, read_json
from tocsin.mute import LATEST, format_time
from tocsin.mute.matchers import Matchers, parse_matchers
from tocsin.mute.silences import Silence, SilenceError
from tocsin.rules.schema import parse_duration
from tocsin.store.base import StoreError
from tocsin.tokens import Role
from tocsin.yamlsrc import Mark, SourceError

__all__ = ["SilenceDesk", "add_silence_routes", "parse_time", "silence_json"]

_STATES = ("pending", "active", "expired")
_FIELDS = ("matchers", "starts_at", "ends_at", "duration", "created_by", "comment")


class SilenceDesk(Protocol):
    """What the daemon offers the API: the silences, and durable changes to them."""

    def now(self) -> float:
        """The daemon's time (a virtual one under `tocsin test`)."""

    def list(self, state: str | None) -> list[Silence]:
        """Return silences, oldest first, only those in `state` when given."""

    def get(self, silence_id: str) -> Silence | None:
        """Return one silence."""

    async def add(
        self, *, matchers: Matchers, starts_at: float, ends_at: float, created_by: str, comment: str
    ) -> Silence:
        """Create a silence and persist it before returning; SilenceError/StoreError if not."""

    async def expire(self, silence_id: str) -> Silence:
        """End a silence now and persist that before returning."""


def silence_json(silence: Silence, now: float) -> dict[str, Any]:
    """The API's view of a silence: its record, times in ISO 8601, and its state now."""
    body = silence.to_dict()
    for key in ("starts_at", "ends_at", "created_at", "expired_at"):
        if body[key] is not None:
            body[key] = _iso(body[key])
    body["state"] = silence.state(now)
    return body


def _iso(when: float) -> str:
    return format_time(when)


def parse_time(value: Any, what: str) -> float:
    """Accept epoch seconds or ISO 8601 with an offset."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= LATEST:
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None and moment.timestamp() <= LATEST:
                return moment.timestamp()
    raise ValueError(
        f"{what} must be epoch seconds or ISO 8601 with a UTC offset, before the year 10000"
    )


def _parse(body: Any, now: float, principal: str) -> dict[str, Any]:
    """Turn a create request into SilenceDesk.add arguments; SilenceError explains problems."""
    if not isinstance(body, dict):
        raise SilenceError("send a JSON object")
    unknown = sorted(str(k) for k in body if k not in _FIELDS)
    if unknown:
        raise SilenceError(f"unknown field(s): {', '.join(unknown)}; known: {', '.join(_FIELDS)}")
    try:
        matchers = parse_matchers(body.get("matchers"), Mark("request", 1, 1))
    except SourceError as exc:
        raise SilenceError(exc.message) from None
    try:
        starts_at = parse_time(body["starts_at"], "starts_at") if "starts_at" in body else now
        ends_at = parse_time(body["ends_at"], "ends_at") if "ends_at" in body else None
    except ValueError as exc:
        raise SilenceError(str(exc)) from None
    if ("ends_at" in body) == ("duration" in body):
        raise SilenceError("give exactly one of ends_at and duration")
    if "duration" in body:
        try:
            ends_at = starts_at + parse_duration(
                body["duration"], Mark("request", 1, 1), "duration"
            )
        except SourceError as exc:
            raise SilenceError(exc.message) from None
    assert ends_at is not None
    for key in ("comment",):
        if not isinstance(body.get(key), str):
            raise SilenceError(f"{key} must be text")
    given = body.get("created_by", principal)
    if not isinstance(given, str):
        raise SilenceError("created_by must be text")
    return {
        "matchers": matchers,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "created_by": author(principal, given),
        "comment": body["comment"],
    }


def add_silence_routes(app: web.Application, gate: Gate, desk: SilenceDesk) -> None:
    """Register the silence endpoints; POST and DELETE need the operator role."""

    async def listing(request: web.Request) -> web.Response:
        state = request.query.get("state")
        if state is not None and state not in _STATES:
            return error(400, f"state must be one of {', '.join(_STATES)}")
        now = desk.now()
        return web.json_response({"silences": [silence_json(s, now) for s in desk.list(state)]})

    async def one(request: web.Request) -> web.Response:
        silence = desk.get(request.match_info["id"])
        if silence is None:
            return error(404, f"no silence {request.match_info['id']}")
        return web.json_response(silence_json(silence, desk.now()))

    async def create(request: web.Request) -> web.StreamResponse:
        body, problem = await read_json(request)
        if problem is not None:
            return problem
        try:
            silence = await desk.add(**_parse(body, desk.now(), caller(request).principal))
        except SilenceError as exc:
            return error(400, str(exc))
        except StoreError as exc:
            return error(503, f"the silence was not saved: {exc.reason}")
        return web.json_response(silence_json(silence, desk.now()), status=201)

    async def expire(request: web.Request) -> web.StreamResponse:
        silence_id = request.match_info["id"]
        if desk.get(silence_id) is None:
            return error(404, f"no silence {silence_id}")
        try:
            silence = await desk.expire(silence_id)
        except SilenceError as exc:
            return error(409, str(exc))
        except StoreError as exc:
            return error(503, f"the silence was not expired: {exc.reason}")
        return web.json_response(silence_json(silence, desk.now()))

    gate.route(app, "GET", "/api/v1/silences", listing, Role.VIEWER)
    gate.route(app, "GET", "/api/v1/silences/{id}", one, Role.VIEWER)
    gate.route(app, "POST", "/api/v1/silences", create, Role.OPERATOR)
    gate.route(app, "DELETE", "/api/v1/silences/{id}", expire, Role.OPERATOR)
