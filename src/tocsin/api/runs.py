"""`/api/v1/runs` and the kill switch: operators see what remediation ran, or would have, decide
runs that wait for approval, and stop all automation at once."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from tocsin.api.auth import Gate, caller
from tocsin.api.handlers import handler, list_query, record_id
from tocsin.api.incidents import MAX_TEXT, IncidentError
from tocsin.api.replies import RequestError, text_field
from tocsin.model import RUN_STATES
from tocsin.tokens import Role

__all__ = ["RunDesk", "add_run_routes"]


class RunDesk(Protocol):
    """What the daemon offers the API about remediation runs; every change is saved first.

    Refusals are IncidentError: 404 (no such run), 409 (not awaiting approval; the switch is
    already so), 503 (not saved).
    """

    async def list(self, *, state: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        """Run views, newest first: id, runbook, rule, key, target, incident, state, reason,
        created_at, started_at, finished_at, steps, result."""

    async def get(self, run_id: int) -> dict[str, Any] | None:
        """One run view."""

    async def approve(self, run_id: int, *, actor: str, note: str = "") -> dict[str, Any]:
        """Let a run awaiting approval go ahead."""

    async def reject(self, run_id: int, *, actor: str, note: str = "") -> dict[str, Any]:
        """Refuse a run awaiting approval; it never runs."""

    def kill_switch(self) -> dict[str, Any]:
        """{"engaged": bool, "by", "at", "why"}."""

    async def engage(self, *, actor: str, why: str) -> dict[str, Any]:
        """Stop all remediation: nothing new runs until released."""

    async def release(self, *, actor: str) -> dict[str, Any]:
        """Let remediation run again."""


def add_run_routes(app: web.Application, gate: Gate, desk: RunDesk) -> None:
    """Register the run and kill-switch endpoints: anyone with a token may engage the switch
    (an emergency stop), only an admin may release it."""

    async def listing(request: web.Request, _body: dict[str, Any]) -> Any:
        query = list_query(request.query, RUN_STATES)
        return {"runs": await desk.list(state=query.state, limit=query.limit, offset=query.offset)}

    async def one(request: web.Request, _body: dict[str, Any]) -> Any:
        run_id = record_id(request, "run")
        run = await desk.get(run_id)
        if run is None:
            raise IncidentError(404, f"no run {run_id}")
        return run

    async def approve(request: web.Request, body: dict[str, Any]) -> Any:
        note = text_field(body, "note", most=MAX_TEXT) or ""
        actor = caller(request).principal
        return await desk.approve(record_id(request, "run"), actor=actor, note=note)

    async def reject(request: web.Request, body: dict[str, Any]) -> Any:
        note = text_field(body, "note", most=MAX_TEXT) or ""
        actor = caller(request).principal
        return await desk.reject(record_id(request, "run"), actor=actor, note=note)

    async def switch(_request: web.Request, _body: dict[str, Any]) -> Any:
        return desk.kill_switch()

    async def engage(request: web.Request, body: dict[str, Any]) -> Any:
        why = text_field(body, "why", least=1, most=MAX_TEXT)
        if why is None:
            raise RequestError("why is required: say what is wrong, for whoever releases it")
        return await desk.engage(actor=caller(request).principal, why=why)

    async def release(request: web.Request, _body: dict[str, Any]) -> Any:
        return await desk.release(actor=caller(request).principal)

    note = ("note",)
    switch_path = "/api/v1/remediation/kill-switch"
    gate.route(app, "GET", "/api/v1/runs", handler(listing), Role.VIEWER)
    gate.route(app, "GET", "/api/v1/runs/{id}", handler(one), Role.VIEWER)
    gate.route(
        app,
        "POST",
        "/api/v1/runs/{id}/approve",
        handler(approve, fields=note, optional=True),
        Role.OPERATOR,
    )
    gate.route(
        app,
        "POST",
        "/api/v1/runs/{id}/reject",
        handler(reject, fields=note, optional=True),
        Role.OPERATOR,
    )
    gate.route(app, "GET", switch_path, handler(switch), Role.VIEWER)
    gate.route(app, "POST", switch_path, handler(engage, fields=("why",)), Role.OPERATOR)
    gate.route(app, "DELETE", switch_path, handler(release), Role.ADMIN)
