"""The HTTP API: /metrics, /healthz, incidents (read-only) and silences (aiohttp)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from tocsin.api.maintenance import MaintenanceDesk, add_maintenance_routes
from tocsin.api.replies import error
from tocsin.api.silences import SilenceDesk, add_silence_routes
from tocsin.model import Incident, IncidentState
from tocsin.store.base import HistoryEntry, Store, StoreError
from tocsin.store.sqlite import SqliteStore

__all__ = ["ApiServer", "incident_json"]

T = TypeVar("T")

_OPEN_STATES = tuple(s.value for s in IncidentState if s is not IncidentState.RESOLVED)
_MAX_LIMIT = 1000
_MAX_ID = 2**63  # SQLite integers are signed 64-bit


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.datetime.fromtimestamp(when, tz=datetime.UTC).isoformat()


def incident_json(incident: Incident) -> dict[str, Any]:
    """Return the API form of an incident."""
    return {
        "id": incident.id,
        "fingerprint": incident.fingerprint,
        "rule": incident.rule,
        "key": incident.key,
        "title": incident.title,
        "state": str(incident.state),
        "priority": incident.priority,
        "impact": incident.impact,
        "urgency": incident.urgency,
        "service": incident.service,
        "category": incident.category,
        "description": incident.description,
        "labels": incident.labels,
        "count": incident.count,
        "first_seen": _iso(incident.first_seen),
        "last_seen": _iso(incident.last_seen),
        "resolved_at": _iso(incident.resolved_at),
        "muted": incident.muted,
    }


def _history_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "time": _iso(entry.time),
        "from": entry.from_state,
        "to": entry.to_state,
        "actor": entry.actor,
        "note": entry.note,
    }


class _Reader:
    """A read-only store used from one thread of its own, beside the writer's."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._store: Store | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tocsin-api-read")

    def _get(self) -> Store:
        if self._store is None:
            store = SqliteStore(path=self._path, readonly=True)
            store.open()
            self._store = store
        return self._store

    async def run(self, fn: Callable[[Store], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, lambda: fn(self._get())
        )

    async def close(self) -> None:
        def close_store() -> None:
            if self._store is not None:
                self._store.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, close_store)
        self._executor.shutdown(wait=True)


class ApiServer:
    """Serves the API on one address; `address` tells the bound host:port (port 0 allowed)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        store_path: Path,
        health: Callable[[], Mapping[str, object]],
        silences: SilenceDesk | None = None,
        maintenance: MaintenanceDesk | None = None,
        tokens: frozenset[str] = frozenset(),
    ) -> None:
        self._host = host
        self._port = port
        self._health = health
        self._reader = _Reader(store_path)
        self._runner: web.AppRunner | None = None
        self.address = f"{host}:{port}"
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/api/v1/incidents", self._incidents)
        app.router.add_get("/api/v1/incidents/{id}", self._incident)
        if silences is not None:
            add_silence_routes(app, silences, tokens)
        if maintenance is not None:
            add_maintenance_routes(app, maintenance, tokens)
        self._app = app

    async def start(self) -> None:
        """Bind and start serving."""
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        self._runner = runner
        server = site._server
        sockets = getattr(server, "sockets", None) or ()
        if sockets:
            bound = sockets[0].getsockname()
            host = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
            self.address = f"{host}:{bound[1]}"

    async def stop(self) -> None:
        """Stop serving and release the read connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self._reader.close()

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _request: web.Request) -> web.Response:
        health = dict(self._health())
        status = 200 if health.get("status") == "ok" else 503
        return web.json_response(health, status=status)

    async def _incidents(self, request: web.Request) -> web.Response:
        state = request.query.get("state", "all")
        valid = ("all", "open", *(s.value for s in IncidentState))
        if state not in valid:
            return error(400, f"state must be one of {', '.join(valid)}")
        try:
            limit = min(int(request.query.get("limit", "100")), _MAX_LIMIT)
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            return error(400, "limit and offset must be whole numbers")
        if limit < 1 or not 0 <= offset < _MAX_ID:
            return error(400, "limit must be >= 1 and offset >= 0")
        states: tuple[str, ...] | None
        states = None if state == "all" else _OPEN_STATES if state == "open" else (state,)
        try:
            found = await self._reader.run(
                lambda s: s.list_incidents(states=states, limit=limit, offset=offset)
            )
        except StoreError as exc:
            return error(503, exc.reason)
        return web.json_response({"incidents": [incident_json(i) for i in found]})

    async def _incident(self, request: web.Request) -> web.Response:
        try:
            incident_id = int(request.match_info["id"])
        except ValueError:
            return error(400, "incident id must be a whole number")
        if not 0 < incident_id < _MAX_ID:
            return error(404, f"no incident {incident_id}")
        try:
            incident = await self._reader.run(lambda s: s.get_incident(incident_id))
            history = await self._reader.run(lambda s: s.incident_history(incident_id))
        except StoreError as exc:
            return error(503, exc.reason)
        if incident is None:
            return error(404, f"no incident {incident_id}")
        body = incident_json(incident)
        body["history"] = [_history_json(h) for h in history]
        return web.json_response(body)
