"""The HTTP API: incidents, on-call, silences, maintenance, remediation runs, problems, known
errors, service requests, access grants, rules, config, /metrics, /healthz (aiohttp)."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from tocsin import obs
from tocsin.api.access import AccessDesk, add_access_routes
from tocsin.api.auth import Gate
from tocsin.api.incidents import IncidentDesk, add_incident_routes
from tocsin.api.maintenance import MaintenanceDesk, add_maintenance_routes
from tocsin.api.oncall import add_oncall_routes
from tocsin.api.openapi import openapi_document
from tocsin.api.problems import ProblemDesk, add_problem_routes
from tocsin.api.reader import StoreReader
from tocsin.api.replies import MAX_BODY, json_errors
from tocsin.api.requests import RequestDesk, add_request_routes
from tocsin.api.rules import RuleBoard, add_rule_routes, rule_figures
from tocsin.api.runs import RunDesk, add_run_routes
from tocsin.api.silences import SilenceDesk, add_silence_routes
from tocsin.tokens import ApiToken, Role

__all__ = ["ApiServer"]

log = structlog.get_logger("tocsin")


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        incidents: IncidentDesk | None = None,
        runs: RunDesk | None = None,
        problems: ProblemDesk | None = None,
        requests: RequestDesk | None = None,
        access: AccessDesk | None = None,
        rules: RuleBoard | None = None,
        config: Callable[[], Mapping[str, Any]] | None = None,
        reload: Callable[[str], Awaitable[Mapping[str, Any]]] | None = None,
        tokens: Iterable[ApiToken] = (),
        open_reads: bool = True,
    ) -> None:
        self._host = host
        self._port = port
        self._health = health
        self._reader = StoreReader(store_path)
        self._runner: web.AppRunner | None = None
        self.address = f"{host}:{port}"
        if open_reads and not _loopback(host):
            log.warning(
                "api_reads_open",
                host=host,
                note="incidents and on-call are readable without a token from the network; "
                "set http.open_reads: false",
            )
        gate = Gate(tokens, open_reads=open_reads)
        app = web.Application(client_max_size=MAX_BODY, middlewares=[json_errors])
        gate.route(app, "GET", "/metrics", self._metrics, None)
        gate.route(app, "GET", "/healthz", self._healthz, None)
        gate.route(app, "GET", "/api/v1/openapi.json", self._openapi, None)
        add_incident_routes(app, gate, self._reader, incidents)
        if incidents is not None:
            add_oncall_routes(app, gate, incidents)
        if silences is not None:
            add_silence_routes(app, gate, silences)
        if maintenance is not None:
            add_maintenance_routes(app, gate, maintenance)
        if runs is not None:
            add_run_routes(app, gate, runs)
        if problems is not None:
            add_problem_routes(app, gate, problems)
        if requests is not None:
            add_request_routes(app, gate, requests)
        if access is not None:
            add_access_routes(app, gate, access)
        if rules is not None:
            add_rule_routes(app, gate, rules)
            board = rules
            obs.RULE_FIGURES.follow(lambda: rule_figures(board))  # what /metrics shows per rule
        if config is not None:
            describe = config

            async def described(_request: web.Request) -> web.Response:
                return web.json_response(dict(describe()))

            gate.route(app, "GET", "/api/v1/config", described, Role.ADMIN)
        if reload is not None:
            reloader = reload

            async def reloaded(_request: web.Request) -> web.Response:
                outcome = dict(await reloader("api"))
                return web.json_response(outcome, status=200 if outcome["status"] == "ok" else 422)

            gate.route(app, "POST", "/api/v1/reload", reloaded, Role.ADMIN)
        self._gate = gate
        self._document = openapi_document(gate.needs)
        self.app = app  # its router lists every route served (tests check them against OpenAPI)

    def set_tokens(self, tokens: Iterable[ApiToken]) -> None:
        """Let these tokens in from now on (a reload read the tokens file again)."""
        self._gate.tokens = tuple(tokens)

    async def start(self) -> None:
        """Bind and start serving."""
        runner = web.AppRunner(self.app, access_log=None)
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

    async def _openapi(self, _request: web.Request) -> web.Response:
        return web.json_response(self._document)
