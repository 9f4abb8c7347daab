"""`/api/v1/oncall`: who is on call in every schedule, now or at a given time."""

from __future__ import annotations

import time
from typing import Any, Protocol

from aiohttp import web

from tocsin.api.auth import Gate
from tocsin.api.replies import error
from tocsin.api.silences import parse_time
from tocsin.records.views import iso_time
from tocsin.tokens import Role

__all__ = ["LAST_AT", "OnCallDesk", "add_oncall_routes", "parse_moment"]

LAST_AT = 253_339_228_800.0  # 9998-01-01T00:00:00Z


class OnCallDesk(Protocol):
    """What the daemon offers the API about on-call schedules (IncidentDesk has it too)."""

    def oncall(self, at: float) -> list[dict[str, Any]]:
        """Who is on call at `at` in every schedule: schedule, on_call, user, until."""


def parse_moment(text: str) -> float:
    """Read a query's time: epoch seconds or ISO 8601 with an offset; ValueError says how."""
    try:
        number = float(text)
    except ValueError:
        moment = parse_time(text, "at")
    else:
        moment = parse_time(number, "at")
    if moment >= LAST_AT:  # schedules look up to a year ahead, and datetime ends at 9999
        raise ValueError("at must be before the year 9998")
    return moment


def add_oncall_routes(app: web.Application, gate: Gate, desk: OnCallDesk) -> None:
    """Register GET /api/v1/oncall."""

    async def oncall(request: web.Request) -> web.Response:
        unknown = sorted(k for k in request.query if k != "at")
        if unknown:
            return error(400, f"unknown parameter(s): {', '.join(unknown)}; known: at")
        try:
            at = parse_moment(request.query["at"]) if "at" in request.query else time.time()
        except ValueError as exc:
            return error(400, str(exc))
        shifts = [{**entry, "until": iso_time(entry["until"])} for entry in desk.oncall(at)]
        return web.json_response({"at": iso_time(at), "oncall": shifts})

    gate.route(app, "GET", "/api/v1/oncall", oncall, Role.VIEWER)
